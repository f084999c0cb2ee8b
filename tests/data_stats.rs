//! Table 1 of the paper, computed from the real files.

mod common;

use kdsr::data::stats::{check_against_paper, PaperCheck, Stats};
use kdsr::data::{Dataset, DatasetId, DatasetRef};

fn stats(id: DatasetId) -> Stats {
    Stats::of(&Dataset::load(&DatasetRef::Named(id), &common::paths()).unwrap())
}

#[test]
fn amazon_counts_match_table1() {
    for (id, users, items, inter) in [
        (DatasetId::Beauty, 22_363, 12_101, 198_502),
        (DatasetId::Clothing, 39_387, 23_033, 278_677),
        (DatasetId::Sports, 35_598, 18_357, 296_337),
        (DatasetId::Toys, 19_412, 11_924, 167_597),
    ] {
        let s = stats(id);
        assert_eq!((s.users, s.items, s.interactions), (users, items, inter), "{id:?}");
        assert!(matches!(check_against_paper(id, &s), PaperCheck::Matches { .. }), "{id:?}");
    }
}

#[test]
fn movielens_1m_five_core_matches_table1() {
    // Fetched by `just data` (which `just test` runs first).
    let s = stats(DatasetId::Ml1m);
    assert_eq!((s.users, s.items, s.interactions), (6_040, 3_416, 999_611));
    assert_eq!(check_against_paper(DatasetId::Ml1m, &s), PaperCheck::Matches { paper_avg_len_differs: None });
    let s = stats(DatasetId::Ml100k);
    assert_eq!(s.users, 943);
    assert!(s.interactions <= 100_000 && s.interactions > 99_000);
}

#[test]
fn cli_prints_table1() {
    let out = common::kdsr_bin().args(["data", "stats", "--dataset", "beauty,toys"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| beauty | 22,363 | 12,101 | 198,502 | 8.88 | 99.93% | matches |"), "{text}");
    assert!(text.contains("| toys | 19,412 | 11,924 | 167,597 |"), "{text}");
}
