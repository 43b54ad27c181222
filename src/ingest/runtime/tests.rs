use super::*;

fn check(list: &str, expected: &[usize]) {
    assert_eq!(parse_cpu_list(list), expected, "{list:?}");
}

#[test]
fn cpu_lists() {
    check("0-1\n", &[0, 1]);
    check("1", &[1]);
    check("0,2-3,8", &[0, 2, 3, 8]);
    check(" 4-4 ", &[4]);
    check("", &[]);
    check("3-1", &[]);
    check("x", &[]);
    check("0-99999999", &[]);
}

#[test]
fn this_process_may_run_somewhere() {
    let cpus = allowed_cpus();
    assert!(!cpus.is_empty());
    // available_parallelism is the affinity count, or less under a cgroup CPU quota.
    assert!(cpus.len() >= std::thread::available_parallelism().map_or(1, |n| n.get()), "{cpus:?}");
}
