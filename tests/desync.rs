mod support;
#[test]
fn stub() {
    let _ = support::TempDir::new("x");
}
