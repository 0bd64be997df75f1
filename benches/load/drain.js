// benches/load.sh, the TLS partner: answers 204 after reading the whole
// request body. nginx 1.22 answering `return 204` over HTTP/2 discards the
// body unread, counts those DATA frames against its flood limit and resets
// the connection ("http2 flood detected"), failing every request in flight
// on it; js_content reads the body first, as a real partner does.
function handle(r) {
    r.return(204);
}

export default { handle };
