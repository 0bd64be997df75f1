//! Selectors compiled into one deterministic automaton over object keys.
//!
//! A state stands for "the set of selector positions reachable by the keys seen
//! so far", ordered by precedence. Precedence is lexicographic from the left
//! over the per-key rank of the segment that consumed each key (exact key 2,
//! `*` 1, `**` 0), so it can be tracked one key at a time: a thread's class
//! after a step is (its class before, the rank of this step). Threads with
//! equal classes have matched with identical rank vectors so far.
//!
//! The alphabet is finite: every literal key named by some selector, plus
//! "any other key". The whole automaton is built when rules load, so the hot
//! path does one lookup per key, and ambiguity (two selectors that tie on some
//! path with different actions) is found at load time, not at request time.

use std::collections::HashMap;

use super::selector::{Segment, Selector};

/// Identifier of a state. `DEAD` matches nothing and nothing below.
pub type StateId = u32;

/// The state with no live selector.
pub const DEAD: StateId = 0;

/// Upper bound on states; a rule file beyond it is refused.
pub const MAX_STATES: usize = 20_000;

/// Transitions of one state.
#[derive(Debug, Clone, Default)]
struct Transitions {
    /// Literal keys whose target differs from `other`, sorted (linear
    /// search when few, binary search when many).
    small: Vec<(Box<[u8]>, StateId)>,
    /// The first eight bytes of each key in `small` ([`head`]): most keys
    /// are told apart, or found equal, without a byte comparison.
    heads: Vec<u64>,
    /// Target for any key not listed.
    other: StateId,
}

/// What is known about a path when the automaton is in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateInfo {
    /// The rule that decides a value at exactly this path, if any.
    pub decision: Option<u32>,
    /// Whether some selector that allows something can match below this path
    /// (so a container here must be entered rather than dropped).
    pub descend: bool,
    /// Whether any selector, `drop` included, can match below this path (so
    /// a kept container here must be entered rather than copied whole).
    pub descend_any: bool,
}

/// A thread: selector index, position in its segments, precedence class.
type Thread = (u32, u16, u16);

/// Two selectors tie on some path with different actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    /// First rule index.
    pub a: u32,
    /// Second rule index.
    pub b: u32,
}

/// The compiled automaton.
#[derive(Debug, Clone)]
pub struct Dfa {
    trans: Vec<Transitions>,
    info: Vec<StateInfo>,
    root: StateId,
}

/// Why the automaton could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfaError {
    /// Two rules tie.
    Ambiguous(Ambiguity),
    /// Too many states (pathological `**` combinations).
    TooLarge,
}

impl Dfa {
    /// Builds the automaton. `allows[i]` says whether rule `i` lets something
    /// leave; `same_action(i, j)` says whether two rules do the same thing
    /// (a tie between those is harmless).
    pub fn build(
        selectors: &[&Selector],
        allows: &[bool],
        same_action: &dyn Fn(usize, usize) -> bool,
    ) -> Result<Dfa, DfaError> {
        // Matching compares canonical forms (see `canonical_key`).
        let canonical: Vec<Selector> = selectors.iter().map(|s| s.canonical()).collect();
        let selectors: Vec<&Selector> = canonical.iter().collect();
        let selectors = selectors.as_slice();
        let mut literals: Vec<&str> = selectors
            .iter()
            .flat_map(|s| s.segments())
            .filter_map(|seg| match seg {
                Segment::Key(k) => Some(&**k),
                _ => None,
            })
            .collect();
        literals.sort_unstable();
        literals.dedup();

        let mut builder = Builder {
            selectors,
            allows,
            ids: HashMap::new(),
            sets: Vec::new(),
        };
        let dead = builder.intern(Vec::new());
        debug_assert_eq!(dead, DEAD);
        let start: Vec<Thread> = (0..selectors.len() as u32).map(|s| (s, 0, 0)).collect();
        let start = builder.close_and_normalise(start);
        let root = builder.intern(start);

        let mut trans: Vec<Transitions> = Vec::new();
        let mut info = Vec::new();
        let mut next = 0usize;
        while next < builder.sets.len() {
            if builder.sets.len() > MAX_STATES {
                return Err(DfaError::TooLarge);
            }
            let set = builder.sets[next].clone();
            info.push(builder.info(&set, same_action)?);
            let other_set = builder.step(&set, None);
            let other = builder.intern(other_set);
            let mut t = Transitions {
                other,
                ..Default::default()
            };
            if !set.is_empty() {
                for lit in &literals {
                    let target_set = builder.step(&set, Some(lit));
                    let target = builder.intern(target_set);
                    if target != other {
                        t.small.push((lit.as_bytes().into(), target));
                    }
                }
            }
            t.small.sort();
            t.heads = t.small.iter().map(|(k, _)| head(k)).collect();
            trans.push(t);
            next += 1;
        }
        Ok(Dfa { trans, info, root })
    }

    /// The state for the document root.
    #[inline]
    pub fn root(&self) -> StateId {
        self.root
    }

    /// The state after one more key, given in canonical form
    /// ([`super::selector::canonical_key`]). Always inlined: it runs once per
    /// key on the hot path, and the JSON loop is where it must live.
    #[inline(always)]
    pub fn step(&self, state: StateId, key: &[u8]) -> StateId {
        self.step_head(state, key, head(key))
    }

    /// [`Self::step`] for a caller that already has the key's first eight
    /// bytes as a number (`h`, zero-padded, as [`head`] gives them).
    #[inline(always)]
    pub fn step_head(&self, state: StateId, key: &[u8], h: u64) -> StateId {
        debug_assert_eq!(h, head(key));
        let t = &self.trans[state as usize];
        if t.small.len() <= 16 {
            for (i, &kh) in t.heads.iter().enumerate() {
                if kh == h {
                    let (k, target) = &t.small[i];
                    if k.len() == key.len() && (key.len() <= 8 || k[8..] == key[8..]) {
                        return *target;
                    }
                }
            }
            return t.other;
        }
        match t.small.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => t.small[i].1,
            Err(_) => t.other,
        }
    }

    /// What is known at a state.
    #[inline]
    pub fn info(&self, state: StateId) -> StateInfo {
        self.info[state as usize]
    }

    /// Number of states (for `/rules` and tests).
    pub fn len(&self) -> usize {
        self.info.len()
    }

    /// Never true: the dead state always exists.
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }
}

/// The first eight bytes of a key as a number, zero-padded.
#[inline(always)]
pub fn head(key: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = key.len().min(8);
    w[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(w)
}

struct Builder<'a> {
    selectors: &'a [&'a Selector],
    allows: &'a [bool],
    ids: HashMap<Vec<Thread>, StateId>,
    sets: Vec<Vec<Thread>>,
}

impl Builder<'_> {
    fn intern(&mut self, set: Vec<Thread>) -> StateId {
        if let Some(id) = self.ids.get(&set) {
            return *id;
        }
        let id = self.sets.len() as StateId;
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        id
    }

    fn segs(&self, sel: u32) -> &[Segment] {
        self.selectors[sel as usize].segments()
    }

    /// Adds the zero-key moves of `**`, keeps the best class per (selector,
    /// position), renumbers classes densely and sorts: equal sets compare equal.
    fn close_and_normalise(&self, mut threads: Vec<Thread>) -> Vec<Thread> {
        let mut i = 0;
        while i < threads.len() {
            let (s, p, c) = threads[i];
            if let Some(Segment::GlobStar) = self.segs(s).get(p as usize) {
                threads.push((s, p + 1, c));
            }
            i += 1;
        }
        threads.sort_unstable();
        threads.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1); // keeps the lowest (best) class
        let mut classes: Vec<u16> = threads.iter().map(|t| t.2).collect();
        classes.sort_unstable();
        classes.dedup();
        for t in &mut threads {
            t.2 = classes.binary_search(&t.2).unwrap_or(0) as u16;
        }
        threads
    }

    /// One key: `Some(literal)` or `None` for any key no selector names.
    fn step(&self, set: &[Thread], key: Option<&str>) -> Vec<Thread> {
        let mut out = Vec::new();
        for &(s, p, c) in set {
            let Some(seg) = self.segs(s).get(p as usize) else {
                continue;
            };
            let (np, rank) = match seg {
                Segment::Key(k) if Some(&**k) == key => (p + 1, 2),
                Segment::Key(_) => continue,
                Segment::Star => (p + 1, 1),
                Segment::GlobStar => (p, 0),
            };
            // Class before dominates; within it a better rank is a lower class.
            out.push((s, np, c * 3 + (2 - rank)));
        }
        self.close_and_normalise(out)
    }

    fn info(
        &self,
        set: &[Thread],
        same_action: &dyn Fn(usize, usize) -> bool,
    ) -> Result<StateInfo, DfaError> {
        let descend = set
            .iter()
            .any(|&(s, p, _)| (p as usize) < self.segs(s).len() && self.allows[s as usize]);
        let descend_any = set
            .iter()
            .any(|&(s, p, _)| (p as usize) < self.segs(s).len());
        let accepting = set
            .iter()
            .filter(|&&(s, p, _)| p as usize == self.segs(s).len());
        // Best class first, then fewer `**`, then the earlier rule (for determinism).
        let key = |&&(s, _, c): &&Thread| (c, self.selectors[s as usize].globstars(), s);
        let mut best: Vec<&Thread> = accepting.collect();
        best.sort_by_key(key);
        let decision = best.first().map(|t| t.0);
        if let Some(a) = best.first() {
            let tied = |b: &&&Thread| {
                b.2 == a.2
                    && self.selectors[b.0 as usize].globstars()
                        == self.selectors[a.0 as usize].globstars()
            };
            if let Some(b) = best[1..]
                .iter()
                .filter(tied)
                .find(|b| !same_action(a.0 as usize, b.0 as usize))
            {
                return Err(DfaError::Ambiguous(Ambiguity { a: a.0, b: b.0 }));
            }
        }
        Ok(StateInfo {
            decision,
            descend,
            descend_any,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(sels: &[&str]) -> (Dfa, Vec<Selector>) {
        let parsed: Vec<Selector> = sels.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let refs: Vec<&Selector> = parsed.iter().collect();
        let allows = vec![true; parsed.len()];
        let dfa = Dfa::build(&refs, &allows, &|_, _| false).unwrap();
        (dfa, parsed)
    }

    fn decide(dfa: &Dfa, path: &[&str]) -> Option<u32> {
        let mut s = dfa.root();
        for k in path {
            s = dfa.step(s, super::super::selector::canonical(k).as_bytes());
        }
        dfa.info(s).decision
    }

    /// The slow definition: best rank vector, then fewer `**`.
    fn reference(sels: &[Selector], path: &[&str]) -> Option<u32> {
        let mut best: Option<(Vec<u8>, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>)> = None;
        for (i, s) in sels.iter().enumerate() {
            if let Some(r) = s.best_ranks(path) {
                let cand = (r, std::cmp::Reverse(s.globstars()), std::cmp::Reverse(i));
                if best.as_ref().is_none_or(|b| cand > *b) {
                    best = Some(cand);
                }
            }
        }
        best.map(|b| b.2.0 as u32)
    }

    #[test]
    fn precedence_matches_the_slow_definition() {
        let sels = [
            "**.email",
            "a.*.email",
            "a.b.email",
            "a.**",
            "a",
            "*.b",
            "**.x.**",
            "a.**.c",
        ];
        let (dfa, parsed) = build(&sels);
        let keys = ["a", "b", "c", "x", "email", "zz"];
        // Every path up to length 4 over the alphabet.
        let mut paths: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &paths {
                for k in keys {
                    let mut q = p.clone();
                    q.push(k);
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            paths.dedup();
            if paths.len() > 2000 {
                break;
            }
        }
        for p in &paths {
            assert_eq!(decide(&dfa, p), reference(&parsed, p), "path {p:?}");
        }
    }

    #[test]
    fn exact_beats_star_beats_globstar() {
        let (dfa, _) = build(&["**.email", "user.*", "user.email"]);
        assert_eq!(decide(&dfa, &["user", "email"]), Some(2));
        assert_eq!(decide(&dfa, &["user", "name"]), Some(1));
        assert_eq!(decide(&dfa, &["x", "email"]), Some(0));
        assert_eq!(decide(&dfa, &["user"]), None);
        assert!(dfa.info(dfa.step(dfa.root(), b"user")).descend);
        // `**.email` can match below any key.
        assert!(dfa.info(dfa.step(dfa.root(), b"nothing")).descend);
        let (dfa, _) = build(&["user.*"]);
        assert!(!dfa.info(dfa.step(dfa.root(), b"nothing")).descend);
        assert_eq!(dfa.step(dfa.root(), b"nothing"), DEAD);
    }

    #[test]
    fn container_selector_beats_trailing_globstar_at_its_own_path() {
        let (dfa, _) = build(&["a.**", "a"]);
        assert_eq!(decide(&dfa, &["a"]), Some(1));
        assert_eq!(decide(&dfa, &["a", "q"]), Some(0));
    }

    #[test]
    fn ties_with_different_actions_are_refused() {
        // At the path `a` both give the rank vector [2] with one `**` each.
        let parsed: Vec<Selector> = ["a.**", "**.a"]
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        let refs: Vec<&Selector> = parsed.iter().collect();
        let err = Dfa::build(&refs, &[true, true], &|_, _| false).unwrap_err();
        assert_eq!(err, DfaError::Ambiguous(Ambiguity { a: 0, b: 1 }));
        // The same action on both is not ambiguous.
        assert!(Dfa::build(&refs, &[true, true], &|_, _| true).is_ok());
    }
}
