//! Modality features on the real data: attributes (with the Toys renumbering), item texts,
//! and text features end to end through the encoder and the cache.

mod common;

use kdsr::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use kdsr::modality::encoder::{default_dir, EncoderFiles, TextEncoder};
use kdsr::modality::{load_features, text, FeatureOptions, Modality};
use std::collections::BTreeMap;
use std::io::Read;

fn full(id: DatasetId) -> Dataset {
    Dataset::load(&DatasetRef::Named(id), &common::paths()).expect("data present (run `just data`)")
}

/// The item2attributes JSON as written: item id -> attribute ids.
fn attribute_json(name: &str) -> BTreeMap<String, Vec<u32>> {
    let path = common::paths().data_dir.join("amazon").join(name);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ones(row: &[f32]) -> Vec<u32> {
    row.iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(k, _)| k as u32 + 1).collect()
}

fn attributes(ds: &Dataset) -> kdsr::modality::FeatureMatrix {
    load_features(ds, Modality::Attributes, &common::paths(), &FeatureOptions::default()).unwrap().matrix
}

#[test]
fn beauty_attribute_rows_are_the_json_lists() {
    let ds = full(DatasetId::Beauty);
    let m = attributes(&ds);
    assert_eq!((m.n_items, m.dim, m.missing.len()), (12101, 637, 0));
    assert!(m.row(0).iter().all(|&v| v == 0.0), "padding row");
    let json = attribute_json("Beauty_item2attributes.json.gz");
    for id in 1..=ds.n_items {
        let mut want = json[&id.to_string()].clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(ones(m.row(id)), want, "item {id}");
    }
    // A slice renumbers items; rows follow the original ids.
    let slice = common::slice(DatasetId::Beauty, 300);
    let s = attributes(&slice);
    for (i, tok) in slice.item_tokens.iter().enumerate() {
        assert_eq!(s.row(i + 1), m.row(tok.parse().unwrap()), "slice item {}", i + 1);
    }
}

#[test]
fn toys_attributes_follow_the_recovered_numbering() {
    let ds = full(DatasetId::Toys);
    let m = attributes(&ds);
    assert_eq!((m.n_items, m.dim, m.missing.len()), (11924, 1027, 0));
    let json = attribute_json("Toys_and_Games_item2attributes.json.gz");
    // Pairs (toys_sequential_data id, Toys_and_Games id) found independently in Python by
    // colour refinement and checked by mapping every sequence of one file onto the other.
    for (kdsr_id, tg_id) in [(1, 4456), (2, 1989), (3, 51), (10, 4438)] {
        let mut want = json[&tg_id.to_string()].clone();
        want.sort_unstable();
        assert_eq!(ones(m.row(kdsr_id)), want, "toys item {kdsr_id} (Toys_and_Games {tg_id})");
    }
    // The identity numbering would be wrong: item 1's own key holds other attributes.
    assert_ne!(ones(m.row(1)), json["1"]);
}

#[test]
fn movielens_genres_and_texts() {
    let ds = full(DatasetId::Ml1m);
    let m = attributes(&ds);
    assert_eq!((m.dim, m.missing.len()), (18, 0));
    let toy = ds.item_tokens.iter().position(|t| t == "Toy Story (1995)").unwrap() + 1;
    // Sorted genres: Action, Adventure, Animation, Children's, Comedy, ...
    assert_eq!(ones(m.row(toy)), vec![3, 4, 5]);
    let cat = text::item_texts(DatasetId::Ml1m, &common::paths()).unwrap();
    let k = cat.tokens.iter().position(|t| t == "Toy Story (1995)").unwrap();
    assert_eq!(cat.values[k].as_deref(), Some("Toy Story (1995); genres: Animation, Children's, Comedy"));
}

#[test]
fn amazon_texts_are_joined_by_asin() {
    let paths = common::paths();
    let cat = text::item_texts(DatasetId::Beauty, &paths).unwrap();
    assert_eq!(cat.tokens.len(), 12101);
    // Item 1 is ASIN B004756YJA in beauty_item_id2asin.tsv.gz.
    let mut raw = String::new();
    let p = paths.data_dir.join("amazon/Beauty_item_generative_indexing_phase_0.txt.gz");
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap()).read_to_string(&mut raw).unwrap();
    let line = raw.lines().find(|l| l.starts_with("B004756YJA ")).unwrap();
    assert_eq!(cat.tokens[0], "1");
    assert_eq!(cat.values[0].as_deref(), Some(line["B004756YJA ".len()..].trim()));
    // Exactly one Beauty item (id 10205, ASIN B001LTVF7G) has an empty text.
    let none: Vec<&str> =
        cat.tokens.iter().zip(&cat.values).filter(|(_, v)| v.is_none()).map(|(t, _)| t.as_str()).collect();
    assert_eq!(none, ["10205"]);
    for id in [DatasetId::Sports, DatasetId::Toys] {
        let c = text::item_texts(id, &paths).unwrap();
        assert!(c.values.iter().all(Option::is_some), "{id:?}");
    }
}

/// ml-100k (1,682 short texts) through the real encoder into a fresh cache directory.
#[test]
fn text_features_end_to_end_and_cached() {
    let real = common::paths();
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(real.cache_dir.canonicalize().unwrap().join("recbole"), tmp.path().join("recbole"))
        .unwrap();
    let paths = DataPaths { data_dir: real.data_dir.clone(), cache_dir: tmp.path().to_path_buf() };
    let enc_dir = default_dir(&real);
    let opts = FeatureOptions { text_encoder: Some(enc_dir.clone()), ..FeatureOptions::default() };
    let ds = Dataset::load(&DatasetRef::Named(DatasetId::Ml100k), &paths).unwrap().truncate_users(100);
    let built = load_features(&ds, Modality::Text, &paths, &opts).unwrap();
    assert!(!built.from_cache && built.rebuild_reason.as_deref() == Some("no cache entry"));
    let m = &built.matrix;
    assert_eq!((m.dim, m.missing.len()), (384, 0));
    let cache = built.cache_path.clone().unwrap();
    assert!(cache.starts_with(tmp.path().join("features/ml-100k")), "{}", cache.display());
    // Each row is the encoder's embedding of that item's own text.
    let cat = text::item_texts(DatasetId::Ml100k, &paths).unwrap();
    let encoder = TextEncoder::load(&EncoderFiles::locate(&enc_dir).unwrap(), &candle_core::Device::Cpu).unwrap();
    for id in [1, 2, ds.n_items / 2, ds.n_items] {
        let k = cat.tokens.iter().position(|t| *t == ds.item_tokens[id - 1]).unwrap();
        let want = encoder.encode(&[cat.values[k].as_deref().unwrap()], 1, |_| {}).unwrap();
        let diff = want.iter().zip(m.row(id)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "item {id}: {diff}");
        let norm = m.row(id).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "item {id}: norm {norm}");
    }
    let again = load_features(&ds, Modality::Text, &paths, &opts).unwrap();
    assert!(again.from_cache && again.rebuild_reason.is_none());
    assert_eq!(again.matrix, *m);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.with_extension("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["rows"].as_u64(), manifest["dim"].as_u64()), (Some(1682), Some(384)));
}
