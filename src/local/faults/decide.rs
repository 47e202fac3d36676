//! The fault proxy's choices, one per request, from the spec and a seeded generator: the same
//! seed and the same requests give the same faults.

use super::spec::{FaultKind, FaultSpec};
use super::target::ApiRequest;
use std::time::Duration;

/// What kind of request it is, as far as the faults care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestClass {
    /// A watch (`watch=true` or `watch=1`).
    pub watch: bool,
    /// A watch resuming from a resourceVersion other than `0` (a re-list answers with a new one).
    pub resumes: bool,
}

impl RequestClass {
    /// The class of a request with query string `query` (without the `?`).
    pub fn of(query: Option<&str>) -> Self {
        let mut watch = false;
        let mut resumes = false;
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "watch" => watch = value == "true" || value == "1",
                "resourceVersion" => resumes = !value.is_empty() && value != "0",
                _ => {}
            }
        }
        Self { watch, resumes: watch && resumes }
    }
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Passed to the API server and its answer passed back.
    Pass,
    /// Failed this way instead.
    Fail(FaultKind),
    /// A resuming watch answered `410 Gone` (`Expired`).
    Gone,
}

/// One request's fate: how long it waits first, then what happens to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Added latency.
    pub delay: Duration,
    /// What follows.
    pub action: Action,
}

/// SplitMix64: a small, fast generator, good enough to spread faults, seeded for repeatable runs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits: every value a f64 in [0, 1) can hold at that spacing.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

/// Decides the fate of one request of class `class`, doing `request` (`None` outside the resource
/// API), under `spec`: its errors only when `request` is one of those it names (`on`).
pub fn decide(spec: &FaultSpec, class: RequestClass, request: Option<&ApiRequest>, rng: &mut Rng) -> Decision {
    let delay = if spec.delay.is_zero() { Duration::ZERO } else { spec.delay.mul_f64(rng.unit()) };
    let targeted = spec.on.is_empty() || spec.on.iter().any(|target| target.matches(request));
    let action = if class.resumes && rng.unit() < spec.gone_rate {
        Action::Gone
    } else if rng.unit() < spec.error_rate && targeted && !spec.kinds.is_empty() {
        Action::Fail(spec.kinds[rng.below(spec.kinds.len())])
    } else {
        Action::Pass
    };
    Decision { delay, action }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn watches_and_resumed_watches_are_told_apart() {
        let class = |query| RequestClass::of(Some(query));
        assert_eq!(RequestClass::of(None), RequestClass { watch: false, resumes: false });
        assert_eq!(class("labelSelector=a&limit=500"), RequestClass { watch: false, resumes: false });
        assert_eq!(class("resourceVersion=12"), RequestClass { watch: false, resumes: false });
        assert_eq!(class("watch=true&resourceVersion=0"), RequestClass { watch: true, resumes: false });
        assert_eq!(class("watch=1&resourceVersion="), RequestClass { watch: true, resumes: false });
        assert_eq!(
            class("allowWatchBookmarks=true&resourceVersion=4711&timeoutSeconds=290&watch=true"),
            RequestClass { watch: true, resumes: true }
        );
        assert_eq!(class("watch=false&resourceVersion=9"), RequestClass { watch: false, resumes: false });
    }

    #[test]
    fn the_default_spec_passes_everything_at_once() {
        let mut rng = Rng::new(1);
        let class = RequestClass { watch: true, resumes: true };
        for _ in 0..1000 {
            assert_eq!(
                decide(&FaultSpec::default(), class, None, &mut rng),
                Decision { delay: Duration::ZERO, action: Action::Pass }
            );
        }
    }

    #[test]
    fn faults_come_at_the_rate_asked_spread_over_every_kind_and_repeat_with_the_seed() {
        let spec = FaultSpec { error_rate: 0.1, delay: Duration::from_millis(40), seed: 42, ..FaultSpec::default() };
        let plain = RequestClass { watch: false, resumes: false };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..20_000).map(|_| decide(&spec, plain, None, &mut rng)).collect::<Vec<_>>()
        };
        let decisions = run(spec.seed);
        assert_eq!(decisions, run(spec.seed), "the same seed, the same faults");
        assert_ne!(decisions, run(spec.seed + 1));
        let mut kinds = BTreeMap::new();
        for decision in &decisions {
            assert!(decision.delay <= spec.delay, "{decision:?}");
            match decision.action {
                Action::Fail(kind) => *kinds.entry(kind).or_insert(0) += 1,
                Action::Pass => {}
                Action::Gone => panic!("a plain request is never answered Gone"),
            }
        }
        let failed: u32 = kinds.values().sum();
        assert!((1800..=2200).contains(&failed), "about 10 % of 20000: {failed}");
        assert_eq!(kinds.len(), FaultKind::ALL.len(), "{kinds:?}");
        for (kind, count) in kinds {
            assert!((200..=470).contains(&count), "about a sixth of the faults each: {kind:?} {count}");
        }
        let mean = decisions.iter().map(|d| d.delay.as_secs_f64()).sum::<f64>() / decisions.len() as f64;
        assert!((0.018..0.022).contains(&mean), "delays spread up to 40 ms: mean {mean}");
    }

    #[test]
    fn only_resuming_watches_are_answered_gone() {
        let spec = FaultSpec { gone_rate: 0.5, ..FaultSpec::default() };
        let mut rng = Rng::new(3);
        let count =
            |class, rng: &mut Rng| (0..1000).filter(|_| decide(&spec, class, None, rng).action == Action::Gone).count();
        assert_eq!(count(RequestClass { watch: true, resumes: false }, &mut rng), 0);
        assert_eq!(count(RequestClass { watch: false, resumes: false }, &mut rng), 0);
        let gone = count(RequestClass { watch: true, resumes: true }, &mut rng);
        assert!((430..=570).contains(&gone), "about half: {gone}");
    }

    #[test]
    fn errors_on_named_requests_fail_those_every_time_and_pass_the_rest() {
        let spec: FaultSpec = "errors=100%,kinds=500,on=create:pods".parse().expect("spec");
        let plain = RequestClass { watch: false, resumes: false };
        let mut rng = Rng::new(spec.seed);
        let create = ApiRequest::of(&http::Method::POST, "/api/v1/namespaces/ns/pods", None);
        let status = ApiRequest::of(&http::Method::PATCH, "/apis/g/v1/namespaces/ns/apimanagerbackups/b/status", None);
        for _ in 0..100 {
            assert_eq!(decide(&spec, plain, create.as_ref(), &mut rng).action, Action::Fail(FaultKind::InternalError));
            assert_eq!(decide(&spec, plain, status.as_ref(), &mut rng).action, Action::Pass);
            assert_eq!(decide(&spec, plain, None, &mut rng).action, Action::Pass);
        }
    }

    #[test]
    fn units_stay_below_one_and_below_stays_below_n() {
        let mut rng = Rng::new(u64::MAX);
        for _ in 0..10_000 {
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
            assert!(rng.below(6) < 6);
        }
        assert_eq!(rng.below(0), 0);
    }
}
