//! The activation store end to end on small synthetic data written through the real writers:
//! 3 shards × 50 contexts × 16 positions (position 0 is a special BOS row), three hooks
//! (f32 d=8, f16 d=12, bf16 d=8). Every value is a function of (context, position, component), so
//! reads are checked exactly: f32 bit-exact, f16 and bf16 equal to `half`'s round-to-nearest of
//! the written f32.
//!
//! Set `UNRAVEL_KEEP_TEST_DATA=/some/dir` to keep a copy of the dataset (for
//! scripts/check_shards_pyarrow.py).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use half::{bf16, f16};
use parquet::basic::{Compression, Encoding};
use parquet::file::reader::{FileReader, SerializedFileReader};
use unravel::store::{
    merge, merge_part_folders, Bos, ContextBatch, CorpusInfo, Dataset, DatasetWriter, HookInfo,
    Loader, LoaderConfig, LoaderMode, LoaderState, Manifest, ModelInfo, Part, ShardWriter,
    StorageDtype, StoreError, WriterOptions,
};

const CTX: u32 = 16;
const CONTEXTS: u64 = 150;
const PER_SHARD: u64 = 50;
const F32_HOOK: &str = "blocks.0.hook_resid_post";
const F16_HOOK: &str = "blocks.1.mlp.hook_post";
const BF16_HOOK: &str = "hook_embed";

fn hooks() -> Vec<HookInfo> {
    let h = |name: &str, d, dtype| HookInfo {
        name: name.into(),
        d,
        dtype,
    };
    vec![
        h(F32_HOOK, 8, StorageDtype::F32),
        h(F16_HOOK, 12, StorageDtype::F16),
        h(BF16_HOOK, 8, StorageDtype::Bf16),
    ]
}

/// Row key of (context, position): exact in f32 for the test's sizes.
fn key(c: u64, p: u32) -> f32 {
    (c * 1000 + p as u64) as f32
}

/// The f32 handed to the writer for hook `h`, component `j` of row (c, p). Components 0 (and 1
/// for the 2-byte hooks) identify the row exactly; the rest are arbitrary non-round values.
fn value(h: usize, c: u64, p: u32, j: usize) -> f32 {
    match (h, j) {
        (0, 0) => key(c, p),
        (1 | 2, 0) => c as f32,
        (1 | 2, 1) => p as f32,
        _ => {
            let n = (c * 31 + p as u64 * 7 + j as u64 * 13 + h as u64 * 5) % 97;
            (n as f32 / 7.3 - 6.0) * 1.0001
        }
    }
}

/// What reading should return for a written value.
fn stored(dtype: StorageDtype, x: f32) -> f32 {
    match dtype {
        StorageDtype::F32 => x,
        StorageDtype::F16 => f16::from_f32(x).to_f32(),
        StorageDtype::Bf16 => bf16::from_f32(x).to_f32(),
    }
}

fn header(ctx: usize) -> Manifest {
    let mut m = Manifest::new(
        ModelInfo {
            id: "synthetic".into(),
            revision: None,
            arch: "gpt2".into(),
            config_sha256: "c0ffee".into(),
            weights_sha256: None,
            random_weights: true,
            seed: Some(0),
        },
        "70ce".into(),
        hooks(),
        ctx,
        Bos::EndOfText,
        CorpusInfo {
            sources: vec!["synthetic.txt".into()],
            sha256: "beef".into(),
            format: "txt".into(),
            text_field: None,
            documents: 10,
            empty_documents: 1,
        },
    );
    m.label_columns = vec!["label.parity".into()];
    m
}

fn options() -> WriterOptions {
    WriterOptions {
        shard_rows: (PER_SHARD * CTX as u64) as usize,
        row_group_rows: 128,
        ..WriterOptions::default()
    }
}

/// Writes contexts `local` (0-based within the run) with ids `base + local`, 10 per batch.
fn write_contexts(w: &mut DatasetWriter, base: u64, local: std::ops::Range<u64>) {
    try_write_contexts(w, base, local).unwrap()
}

fn try_write_contexts(
    w: &mut DatasetWriter,
    base: u64,
    local: std::ops::Range<u64>,
) -> unravel::store::Result<()> {
    try_write_contexts_in_parts(w, base, local, &[10])
}

/// As [`try_write_contexts`], each batch of 10 handed to the writer as parts of `parts`
/// contexts (summing to 10), the way extract's forward workers return it.
fn try_write_contexts_in_parts(
    w: &mut DatasetWriter,
    base: u64,
    local: std::ops::Range<u64>,
    parts: &[usize],
) -> unravel::store::Result<()> {
    let all: Vec<u64> = local.collect();
    for chunk in all.chunks(10) {
        let columns = Columns::new(base, chunk);
        let mut start = 0;
        let mut batches = vec![];
        for &n in parts {
            let end = (start + n).min(chunk.len());
            if end > start {
                batches.push(columns.part(start, end));
            }
            start = end;
        }
        let refs: Vec<Vec<&[f32]>> = batches
            .iter()
            .map(|p| p.acts.iter().map(|v| v.as_slice()).collect())
            .collect();
        let batches: Vec<ContextBatch> =
            batches.iter().zip(&refs).map(|(p, r)| p.batch(r)).collect();
        w.write_batches(&batches)?;
    }
    Ok(())
}

/// The rows of some contexts, owned.
struct Columns {
    ids: Vec<u64>,
    pos: Vec<u32>,
    tids: Vec<u32>,
    toks: Vec<String>,
    special: Vec<bool>,
    labels: Vec<Vec<Option<String>>>,
    acts: Vec<Vec<f32>>,
}

impl Columns {
    fn new(base: u64, contexts: &[u64]) -> Self {
        let (mut ids, mut pos, mut tids, mut toks, mut special, mut parity) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut acts: Vec<Vec<f32>> = vec![vec![]; 3];
        for &c in contexts {
            for p in 0..CTX {
                ids.push(base + c);
                pos.push(p);
                let tid = if p == 0 {
                    50256
                } else {
                    (c as u32 * 7 + p) % 1000
                };
                tids.push(tid);
                toks.push(if p == 0 {
                    "<|endoftext|>".to_string()
                } else {
                    format!("t{tid}")
                });
                special.push(p == 0);
                parity.push(
                    (p % 3 != 0).then(|| if p % 2 == 0 { "even" } else { "odd" }.to_string()),
                );
                for (h, hook) in hooks().iter().enumerate() {
                    acts[h].extend((0..hook.d).map(|j| value(h, c, p, j)));
                }
            }
        }
        let labels = vec![parity];
        Columns {
            ids,
            pos,
            tids,
            toks,
            special,
            labels,
            acts,
        }
    }

    /// Contexts `start..end` of these.
    fn part(&self, start: usize, end: usize) -> Columns {
        let rows = start * CTX as usize..end * CTX as usize;
        Columns {
            ids: self.ids[rows.clone()].to_vec(),
            pos: self.pos[rows.clone()].to_vec(),
            tids: self.tids[rows.clone()].to_vec(),
            toks: self.toks[rows.clone()].to_vec(),
            special: self.special[rows.clone()].to_vec(),
            labels: vec![self.labels[0][rows.clone()].to_vec()],
            acts: hooks()
                .iter()
                .zip(&self.acts)
                .map(|(h, a)| a[rows.start * h.d..rows.end * h.d].to_vec())
                .collect(),
        }
    }

    fn batch<'a>(&'a self, hooks: &'a [&'a [f32]]) -> ContextBatch<'a> {
        ContextBatch {
            context_ids: &self.ids,
            positions: &self.pos,
            token_ids: &self.tids,
            tokens: &self.toks,
            special: &self.special,
            labels: &self.labels,
            hooks,
        }
    }
}

/// The standard dataset: 150 contexts in 3 shards of 800 rows, row groups of 128 rows.
fn write_dataset(dir: &Path) -> Manifest {
    let mut w = DatasetWriter::create(dir, header(CTX as usize), options()).unwrap();
    write_contexts(&mut w, 0, 0..CONTEXTS);
    w.finish().unwrap()
}

fn dataset() -> (tempfile::TempDir, Dataset) {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(tmp.path());
    let ds = Dataset::open(tmp.path()).unwrap();
    (tmp, ds)
}

/// Copies a dataset folder (flat) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

/// Row keys (component 0 of the f32 hook) of a batch.
fn keys(t: &Tensor) -> Vec<u64> {
    rows(t).iter().map(|r| r[0] as u64).collect()
}

fn loader(ds: &Dataset, config: &LoaderConfig) -> Loader {
    Loader::new(ds, config, &Device::Cpu).unwrap()
}

fn shuffled(seed: u64, batch: usize) -> LoaderConfig {
    LoaderConfig {
        seed,
        shuffle_buffer: 300,
        ..LoaderConfig::new(F32_HOOK, batch)
    }
}

fn take(l: &mut Loader, n: usize) -> Vec<Tensor> {
    (0..n).map(|_| l.next_batch().unwrap().unwrap()).collect()
}

fn bits(batches: &[Tensor]) -> Vec<Vec<u32>> {
    batches
        .iter()
        .map(|t| {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn manifest_describes_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let m = write_dataset(tmp.path());
    if let Ok(keep) = std::env::var("UNRAVEL_KEEP_TEST_DATA") {
        copy_dir(tmp.path(), &PathBuf::from(keep));
    }
    assert!(m.complete);
    assert_eq!(m.shards.len(), 3);
    assert_eq!(m.shards[1].file, "shard-00001.parquet");
    assert_eq!(
        (m.shards[1].first_context_id, m.shards[1].last_context_id),
        (50, 99)
    );
    assert_eq!(m.totals.rows, CONTEXTS * CTX as u64);
    assert_eq!(m.totals.contexts, CONTEXTS);
    assert_eq!(m.totals.special_rows, CONTEXTS);
    assert_eq!(m.totals.tokens, CONTEXTS * (CTX as u64 - 1));
    assert_eq!(m.next_context_id, CONTEXTS);
    // Statistics over non-special rows, from the written f32 values.
    let st = &m.stats[F32_HOOK];
    assert_eq!(st.count, m.totals.tokens);
    let n = st.count as f64;
    let mean0: f64 = (0..CONTEXTS)
        .flat_map(|c| (1..CTX).map(move |p| key(c, p) as f64))
        .sum::<f64>()
        / n;
    assert!(
        (st.mean[0] - mean0).abs() < 1e-9 * mean0,
        "{} vs {mean0}",
        st.mean[0]
    );
    // The saved manifest is what finish returned.
    assert_eq!(Manifest::load(tmp.path()).unwrap(), m);
}

#[test]
fn values_round_trip_in_every_dtype() {
    let (_tmp, ds) = dataset();
    for (h, hook) in hooks().iter().enumerate() {
        let mut checked = 0;
        for shard in 0..ds.shard_count() {
            let reader = ds.shard_reader(shard).unwrap();
            assert_eq!(reader.row_groups(), [128, 128, 128, 128, 128, 128, 32]);
            for rg in 0..reader.row_groups().len() {
                let got = reader.read_hook(hook, rg, true).unwrap();
                let ids = reader
                    .read_columns(rg, &["context_id", "position"])
                    .unwrap();
                let ids = &ids[0];
                let c = ids
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::UInt64Array>()
                    .unwrap();
                let p = ids
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow_array::UInt32Array>()
                    .unwrap();
                assert_eq!(got.rows, c.len());
                for r in 0..got.rows {
                    for j in 0..hook.d {
                        let want = stored(hook.dtype, value(h, c.value(r), p.value(r), j));
                        let have = got.values[r * hook.d + j];
                        assert_eq!(
                            have.to_bits(),
                            want.to_bits(),
                            "{} row {r} comp {j}",
                            hook.name
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, CONTEXTS as usize * CTX as usize * hook.d);
    }
}

#[test]
fn zstd_level_0_stores_every_column_uncompressed_with_the_same_rows() {
    let (zstd_dir, zstd) = dataset();
    let plain_dir = tempfile::tempdir().unwrap();
    let options = WriterOptions {
        zstd_level: 0,
        ..options()
    };
    let mut w = DatasetWriter::create(plain_dir.path(), header(CTX as usize), options).unwrap();
    write_contexts(&mut w, 0, 0..CONTEXTS);
    w.finish().unwrap();
    let plain = Dataset::open(plain_dir.path()).unwrap();
    plain.verify().unwrap();

    let reader = SerializedFileReader::new(File::open(plain.shard_path(0)).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    for i in 0..rg.num_columns() {
        assert_eq!(
            rg.column(i).compression(),
            Compression::UNCOMPRESSED,
            "column {i}"
        );
    }
    let size = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert!(size(plain_dir.path()) > size(zstd_dir.path()));
    for hook in hooks() {
        let a = zstd
            .shard_reader(1)
            .unwrap()
            .read_hook(&hook, 2, true)
            .unwrap();
        let b = plain
            .shard_reader(1)
            .unwrap()
            .read_hook(&hook, 2, true)
            .unwrap();
        assert_eq!(a.rows, b.rows);
        assert_eq!(bits_of(&a.values), bits_of(&b.values), "{}", hook.name);
    }
}

fn bits_of(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_generic_parquet_reader_sees_columns_rows_and_encodings() {
    let (_tmp, ds) = dataset();
    let reader = SerializedFileReader::new(File::open(ds.shard_path(0)).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 800);
    let roots: Vec<String> = meta
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert_eq!(
        roots,
        [
            "context_id",
            "position",
            "token_id",
            "token",
            "special",
            "label.parity",
            F32_HOOK,
            F16_HOOK,
            BF16_HOOK
        ]
    );
    let rg = meta.row_group(0);
    for i in 0..rg.num_columns() {
        let col = rg.column(i);
        let root = &col.column_path().parts()[0];
        let encodings: Vec<Encoding> = col.encodings().collect();
        let dictionary = encodings.contains(&Encoding::RLE_DICTIONARY);
        // f16 stays PLAIN: DuckDB reads BYTE_STREAM_SPLIT only on 4- and 8-byte types.
        if root == F16_HOOK {
            assert!(
                !encodings.contains(&Encoding::BYTE_STREAM_SPLIT),
                "{root}: {encodings:?}"
            );
        }
        if root == F32_HOOK || root == BF16_HOOK {
            assert!(
                encodings.contains(&Encoding::BYTE_STREAM_SPLIT),
                "{root}: {encodings:?}"
            );
        }
        let wants_dictionary = root == "token" || root == "label.parity";
        assert_eq!(dictionary, wants_dictionary, "{root}: {encodings:?}");
        // (The level is not stored in the file; readers report the default.)
        assert!(matches!(col.compression(), Compression::ZSTD(_)), "{root}");
    }
}

#[test]
fn projection_neither_reads_nor_decodes_other_columns() {
    let (tmp, ds) = dataset();
    let reader = ds.shard_reader(0).unwrap();
    let batches = reader.read_columns(0, &[F16_HOOK]).unwrap();
    assert_eq!(batches[0].num_columns(), 1);
    assert_eq!(batches[0].schema().field(0).name(), F16_HOOK);

    // Overwrite every byte of the f32 hook's column chunks: reading the f16 hook must not notice.
    let path = ds.shard_path(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let meta = SerializedFileReader::new(File::open(&path).unwrap())
        .unwrap()
        .metadata()
        .clone();
    for rg in meta.row_groups() {
        for col in rg.columns() {
            if col.column_path().parts()[0] == F32_HOOK {
                let (start, len) = col.byte_range();
                bytes[start as usize..(start + len) as usize].fill(0xA5);
            }
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let ds = Dataset::open(tmp.path()).unwrap();
    let reader = ds.shard_reader(0).unwrap();
    let hooks = hooks();
    for rg in 0..reader.row_groups().len() {
        reader.read_hook(&hooks[1], rg, false).unwrap();
        reader.read_hook(&hooks[2], rg, false).unwrap();
    }
    assert!(
        reader.read_hook(&hooks[0], 0, false).is_err(),
        "the damaged column was not read"
    );
}

#[test]
fn special_rows_are_excluded_unless_asked_for() {
    let (_tmp, ds) = dataset();
    let single = |include_special| LoaderConfig {
        mode: LoaderMode::SinglePass,
        include_special,
        ..LoaderConfig::new(F32_HOOK, 100)
    };
    let collect = |config: &LoaderConfig| -> Vec<u64> {
        loader(&ds, config)
            .flat_map(|b| keys(&b.unwrap()))
            .collect()
    };
    let without = collect(&single(false));
    assert_eq!(without.len() as u64, CONTEXTS * (CTX as u64 - 1));
    assert!(
        without.iter().all(|k| k % 1000 != 0),
        "a position-0 row was emitted"
    );
    // A single pass is in file order.
    assert!(without.windows(2).all(|w| w[0] < w[1]));
    let with = collect(&single(true));
    assert_eq!(with.len() as u64, CONTEXTS * CTX as u64);
    // The last batch of a single pass is partial: 2250 = 22 × 100 + 50.
    let sizes: Vec<usize> = loader(&ds, &single(false))
        .map(|b| b.unwrap().dims()[0])
        .collect();
    assert_eq!(sizes.len(), 23);
    assert_eq!(sizes[22], 50);
}

#[test]
fn every_row_appears_once_per_epoch_in_shuffled_order() {
    let (_tmp, ds) = dataset();
    let per_epoch = (CONTEXTS * (CTX as u64 - 1)) as usize;
    let mut l = loader(&ds, &shuffled(3, 64));
    assert_eq!(l.rows_per_epoch() as usize, per_epoch);
    let mut stream: Vec<u64> = vec![];
    while stream.len() < 2 * per_epoch {
        stream.extend(keys(&l.next_batch().unwrap().unwrap()));
    }
    let all: HashSet<u64> = (0..CONTEXTS)
        .flat_map(|c| (1..CTX).map(move |p| c * 1000 + p as u64))
        .collect();
    for epoch in 0..2 {
        let rows = &stream[epoch * per_epoch..(epoch + 1) * per_epoch];
        let set: HashSet<u64> = rows.iter().copied().collect();
        assert_eq!(set.len(), per_epoch, "epoch {epoch} repeats a row");
        assert_eq!(set, all, "epoch {epoch} misses rows");
    }
    let first = &stream[..per_epoch];
    assert_ne!(
        first,
        &stream[per_epoch..2 * per_epoch],
        "epochs share one order"
    );
    let ascending = first.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(
        ascending < per_epoch * 2 / 3,
        "barely shuffled: {ascending} ascending pairs"
    );
}

#[test]
fn the_same_seed_gives_the_same_batches_and_another_seed_another_order() {
    let (_tmp, ds) = dataset();
    let a = bits(&take(&mut loader(&ds, &shuffled(11, 50)), 30));
    let b = bits(&take(&mut loader(&ds, &shuffled(11, 50)), 30));
    let c = bits(&take(&mut loader(&ds, &shuffled(12, 50)), 30));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_resumed_loader_continues_with_bit_identical_batches() {
    let (_tmp, ds) = dataset();
    // 7 batches: mid-epoch, mid-window. 44 batches (2200 of 2250 rows): the next ten cross
    // into epoch 1.
    for (config, done) in [
        (shuffled(5, 50), 7),
        (shuffled(5, 50), 44),
        (shuffled(5, 64), 3),
    ] {
        let mut straight = loader(&ds, &config);
        let expected = bits(&take(&mut straight, done + 10)[done..]);
        let mut first = loader(&ds, &config);
        take(&mut first, done);
        let json = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let state: LoaderState = serde_json::from_str(&json).unwrap();
        assert_eq!(state.rows_emitted, (done * config.batch_size) as u64);
        let mut resumed = Loader::resume(&ds, &config, &Device::Cpu, &state).unwrap();
        assert_eq!(
            bits(&take(&mut resumed, 10)),
            expected,
            "after {done} batches"
        );
    }
    // A single pass resumes too, and ends where an uninterrupted one ends.
    let config = LoaderConfig {
        mode: LoaderMode::SinglePass,
        ..LoaderConfig::new(F16_HOOK, 100)
    };
    let straight: Vec<Tensor> = loader(&ds, &config).map(|b| b.unwrap()).collect();
    let mut first = loader(&ds, &config);
    take(&mut first, 9);
    let mut resumed = Loader::resume(&ds, &config, &Device::Cpu, &first.state()).unwrap();
    let rest: Vec<Tensor> = resumed.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(bits(&rest), bits(&straight[9..]));
    assert!(resumed.next_batch().unwrap().is_none());
}

#[test]
fn a_state_from_another_configuration_is_refused() {
    let (_tmp, ds) = dataset();
    let mut l = loader(&ds, &shuffled(1, 10));
    take(&mut l, 2);
    let err = Loader::resume(&ds, &shuffled(2, 10), &Device::Cpu, &l.state())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("different hook, seed"), "{err}");
}

#[test]
fn held_out_shards_are_disjoint_from_training_shards() {
    let (_tmp, ds) = dataset();
    let (train, eval) = ds.split(1).unwrap();
    assert_eq!((train.clone(), eval.clone()), (vec![0, 1], vec![2]));
    let contexts = |shards: Vec<usize>, mode| -> HashSet<u64> {
        let config = LoaderConfig {
            shards: Some(shards),
            mode,
            ..shuffled(9, 100)
        };
        let mut l = loader(&ds, &config);
        let n = l.rows_per_epoch() as usize;
        let mut out = HashSet::new();
        let mut seen = 0;
        while seen < n {
            let k = keys(&l.next_batch().unwrap().unwrap());
            seen += k.len();
            out.extend(k.iter().map(|k| k / 1000));
        }
        out
    };
    let t = contexts(train, LoaderMode::Shuffled);
    let e = contexts(eval, LoaderMode::SinglePass);
    assert_eq!(t, (0..100).collect());
    assert_eq!(e, (100..150).collect());
    let err = ds.split(3).unwrap_err().to_string();
    assert!(err.contains("keep at least one for training"), "{err}");
    assert_eq!(ds.split(0).unwrap().1, Vec::<usize>::new());
}

#[test]
fn verify_names_a_truncated_or_altered_shard() {
    let (tmp, ds) = dataset();
    ds.verify().unwrap();

    // Truncated: the hash no longer matches.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(tmp.path(), copy.path());
    let shard = copy.path().join("shard-00001.parquet");
    let len = std::fs::metadata(&shard).unwrap().len();
    File::options()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let err = Dataset::open(copy.path())
        .unwrap()
        .verify()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-00001.parquet") && err.contains("sha256 mismatch"),
        "{err}"
    );

    // Truncated and the manifest "fixed" to match: the footer check names the shard.
    let mut m = Manifest::load(copy.path()).unwrap();
    let bytes = std::fs::read(&shard).unwrap();
    m.shards[1].bytes = bytes.len() as u64;
    m.shards[1].sha256 = sha256_hex(&bytes);
    m.save(copy.path()).unwrap();
    let err = Dataset::open(copy.path()).unwrap().verify().unwrap_err();
    assert!(matches!(err, StoreError::Parquet { .. }), "{err}");
    assert!(err.to_string().contains("shard-00001.parquet"), "{err}");

    // A wrong hash in the manifest.
    let mut m = Manifest::load(tmp.path()).unwrap();
    m.shards[2].sha256 = "0".repeat(64);
    m.save(tmp.path()).unwrap();
    let err = Dataset::open(tmp.path())
        .unwrap()
        .verify()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-00002.parquet") && err.contains("sha256 mismatch"),
        "{err}"
    );

    // A missing shard is caught by open.
    std::fs::remove_file(tmp.path().join("shard-00000.parquet")).unwrap();
    let err = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("shard-00000.parquet") && err.contains("missing"),
        "{err}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn unfinished_shards_stay_tmp_files_and_are_never_listed() {
    let (tmp, ds) = dataset();
    // A crash in the middle of a shard: forget the writer so no cleanup runs.
    let path = tmp.path().join("shard-00003.parquet");
    let mut w = ShardWriter::builder(hooks()).create(&path).unwrap();
    let acts: Vec<Vec<f32>> = hooks().iter().map(|h| vec![0.5; h.d]).collect();
    let refs: Vec<&[f32]> = acts.iter().map(|v| v.as_slice()).collect();
    w.write_batch(&ContextBatch {
        context_ids: &[999],
        positions: &[0],
        token_ids: &[1],
        tokens: &["x".into()],
        special: &[false],
        labels: &[],
        hooks: &refs,
    })
    .unwrap();
    std::mem::forget(w);
    assert!(!path.exists());
    assert!(tmp.path().join(".shard-00003.parquet.tmp").exists());
    let reopened = Dataset::open(tmp.path()).unwrap();
    assert_eq!(reopened.shard_count(), 3);
    assert_eq!(reopened.manifest(), ds.manifest());

    // Dropping an unfinished writer (an error path) removes its .tmp.
    let path = tmp.path().join("other.parquet");
    drop(ShardWriter::builder(hooks()).create(&path).unwrap());
    assert!(!tmp.path().join(".other.parquet.tmp").exists() && !path.exists());
}

#[test]
fn an_interrupted_extraction_resumes_to_identical_shards() {
    let straight = tempfile::tempdir().unwrap();
    let expected = write_dataset(straight.path());

    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(dir.path(), header(CTX as usize), options()).unwrap();
    write_contexts(&mut w, 0, 0..70); // shard 0 finished, shard 1 half written
    drop(w); // the crash: the half shard's .tmp is gone, the manifest lists one shard
    let mut w = DatasetWriter::resume(dir.path(), &header(CTX as usize), options()).unwrap();
    assert_eq!(w.next_context_id(), 50);
    assert_eq!(w.manifest().shards.len(), 1);
    // Writing an already stored context is refused.
    let err = try_write_contexts(&mut w, 0, 40..50)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("context id 40 is already stored (the dataset continues at 50)"),
        "{err}"
    );
    let start = w.next_context_id();
    write_contexts(&mut w, 0, start..CONTEXTS);
    let resumed = w.finish().unwrap();
    assert_eq!(resumed.shards, expected.shards, "same bytes, same hashes");
    assert_eq!(resumed.totals, expected.totals);
    assert_eq!(
        resumed.stats[F32_HOOK].count,
        expected.stats[F32_HOOK].count
    );
    for (a, b) in resumed.stats[F16_HOOK]
        .mean
        .iter()
        .zip(&expected.stats[F16_HOOK].mean)
    {
        assert!((a - b).abs() < 1e-12);
    }
    Dataset::open(dir.path()).unwrap().verify().unwrap();
}

/// extract hands the writer each batch as its forward workers' groups: the shards must not
/// depend on the split. With shards of ≥ 45 contexts, closing after a part of 7 would end the
/// first shard at context 47; closing after the whole batch ends it at 50, as unsplit.
#[test]
fn a_batch_written_in_parts_gives_the_same_shards() {
    let opts = || WriterOptions {
        shard_rows: 45 * CTX as usize,
        ..options()
    };
    let whole = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(whole.path(), header(CTX as usize), opts()).unwrap();
    write_contexts(&mut w, 0, 0..CONTEXTS);
    let expected = w.finish().unwrap();
    let rows: Vec<u64> = expected.shards.iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![800, 800, 800]);

    let parts = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(parts.path(), header(CTX as usize), opts()).unwrap();
    try_write_contexts_in_parts(&mut w, 0, 0..CONTEXTS, &[7, 3]).unwrap();
    let split = w.finish().unwrap();
    assert_eq!(
        split.shards, expected.shards,
        "same rows, same bytes, same hashes"
    );
}

#[test]
fn resuming_with_other_settings_is_refused_with_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let mut other = header(32);
    other.hooks[1].dtype = StorageDtype::Bf16;
    other.corpus.sha256 = "f00d".into();
    let diff = Manifest::load(dir.path())
        .unwrap()
        .compatible_for_resume(&other, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        diff.contains("ctx: dataset has 16, this run has 32"),
        "{diff}"
    );
    assert!(
        diff.contains("blocks.1.mlp.hook_post (d=12, f16)") && diff.contains("(d=12, bf16)"),
        "{diff}"
    );
    assert!(
        diff.contains("corpus.sha256: dataset has \"beef\", this run has \"f00d\""),
        "{diff}"
    );
    assert!(!diff.contains("model"), "{diff}");
    let err = DatasetWriter::resume(dir.path(), &other, options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("cannot resume the dataset in") && err.contains("ctx:"),
        "{err}"
    );
    // The same settings (another budget) are fine.
    let mut same = header(16);
    same.max_tokens = Some(1 << 20);
    Manifest::load(dir.path())
        .unwrap()
        .compatible_for_resume(&same, dir.path())
        .unwrap();
    // Creating over an existing dataset is refused.
    let err = DatasetWriter::create(dir.path(), header(16), options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("manifest.json") && err.contains("already exists"),
        "{err}"
    );
}

/// Writes part `index` of 2 (25 contexts) into `dir`.
fn write_part(dir: &Path, index: u32, ctx: usize, finish: bool) -> Manifest {
    let mut m = header(ctx);
    m.part = Some(Part::new(index, 2).unwrap());
    let opts = WriterOptions {
        shard_rows: 10 * CTX as usize,
        ..options()
    };
    let mut w = DatasetWriter::create(dir, m, opts).unwrap();
    // Context ids are global: part i of 2 owns the ids with id % 2 == i - 1.
    assert_eq!(w.next_context_id(), 0);
    for c in 0..25u64 {
        write_contexts(&mut w, 2 * c + u64::from(index - 1), 0..1);
    }
    if finish {
        w.finish().unwrap()
    } else {
        w.manifest().clone()
    }
}

#[test]
fn parts_in_one_folder_merge_into_one_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = write_part(dir.path(), 1, CTX as usize, true);
    let p2 = write_part(dir.path(), 2, CTX as usize, true);
    assert_eq!(p2.shards[0].file, "shard-p02-00000.parquet");
    let meta = dir.path().join("__unravel__");
    assert!(meta.join("manifest-p02.json").exists());
    // A part written before the `__unravel__/` folder kept its manifest at the top level.
    std::fs::rename(
        meta.join("manifest-p01.json"),
        dir.path().join("manifest-p01.json"),
    )
    .unwrap();
    let merged = merge_part_folders(dir.path(), &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(merged.part, None);
    assert!(merged.complete);
    assert!(meta.join("manifest.json").is_file());
    assert_eq!(merged.shards.len(), 6);
    assert_eq!(merged.totals.rows, 50 * CTX as u64);
    assert_eq!(merged.corpus.documents, 20);
    let st = &merged.stats[F32_HOOK];
    assert_eq!(
        st.count,
        p1.stats[F32_HOOK].count + p2.stats[F32_HOOK].count
    );
    let mean = (p1.stats[F32_HOOK].mean[3] + p2.stats[F32_HOOK].mean[3]) / 2.0;
    assert!((st.mean[3] - mean).abs() < 1e-12);
    let ds = Dataset::open(dir.path()).unwrap();
    ds.verify().unwrap();
    let config = LoaderConfig {
        mode: LoaderMode::SinglePass,
        ..LoaderConfig::new(F16_HOOK, 64)
    };
    let n: usize = loader(&ds, &config).map(|b| b.unwrap().dims()[0]).sum();
    assert_eq!(n as u64, merged.totals.tokens);
}

#[test]
fn parts_in_separate_folders_merge_by_relative_path() {
    let out = tempfile::tempdir().unwrap();
    write_part(&out.path().join("a"), 1, CTX as usize, true);
    write_part(&out.path().join("b"), 2, CTX as usize, true);
    let merged =
        merge_part_folders(out.path(), &[out.path().join("a"), out.path().join("b")]).unwrap();
    assert_eq!(merged.shards[0].file, "a/shard-p01-00000.parquet");
    assert_eq!(merged.shards[5].file, "b/shard-p02-00002.parquet");
    Dataset::open(out.path()).unwrap().verify().unwrap();
    // A folder outside the output folder is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let err = merge_part_folders(elsewhere.path(), &[out.path().join("a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not inside the output folder"), "{err}");
}

#[test]
fn mismatched_or_unfinished_parts_are_refused_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = write_part(&dir.path().join("1"), 1, CTX as usize, true);
    let p2_other_ctx = write_part(&dir.path().join("2"), 2, 32, true);
    let p2_unfinished = write_part(&dir.path().join("3"), 2, CTX as usize, false);

    let err = merge(vec![p1.clone(), p2_other_ctx])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ctx: part p01 has 16, part p02 has 32"),
        "{err}"
    );
    let err = merge(vec![p1.clone(), p2_unfinished])
        .unwrap_err()
        .to_string();
    assert!(err.contains("part p02 is not complete"), "{err}");
    let err = merge(vec![p1.clone()]).unwrap_err().to_string();
    assert!(err.contains("missing parts: p02"), "{err}");
    let err = merge(vec![p1.clone(), p1.clone()]).unwrap_err().to_string();
    assert!(err.contains("part p01 is given twice"), "{err}");
    let mut whole = p1.clone();
    whole.part = None;
    let err = merge(vec![whole]).unwrap_err().to_string();
    assert!(err.contains("not a part"), "{err}");
    // A part whose shards hold ids it does not own (here: part 1's ids relabelled as part 2).
    let mut p2 = p1.clone();
    p2.part = Some(Part::new(2, 2).unwrap());
    for s in &mut p2.shards {
        s.file = s.file.replace("p01", "p02");
    }
    let err = merge(vec![p1, p2]).unwrap_err().to_string();
    assert!(err.contains("does not own"), "{err}");
}

#[test]
fn a_missing_or_corrupt_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("__unravel__/manifest.json") && err.contains("no manifest found"),
        "{err}"
    );
    // A legacy top-level manifest is read, so its corruption is named too.
    std::fs::write(dir.path().join("manifest.json"), "{\"format\": 3").unwrap();
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("not a valid manifest"),
        "{err}"
    );
    write_part(dir.path(), 1, CTX as usize, true);
    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("merge-manifests"), "{err}");
}

#[test]
fn malformed_batches_and_unwritable_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-00000.parquet");
    let mut w = ShardWriter::builder(hooks()).create(&path).unwrap();
    let good: Vec<Vec<f32>> = hooks().iter().map(|h| vec![1.0; h.d]).collect();
    let mut bad = good.clone();
    bad[1][3] = 1e6; // overflows f16
    let refs: Vec<&[f32]> = bad.iter().map(|v| v.as_slice()).collect();
    let batch = ContextBatch {
        context_ids: &[0],
        positions: &[0],
        token_ids: &[1],
        tokens: &["x".into()],
        special: &[false],
        labels: &[],
        hooks: &refs,
    };
    let err = w.write_batch(&batch).unwrap_err().to_string();
    assert!(
        err.contains("blocks.1.mlp.hook_post row 0 holds 1000000") && err.contains("f16"),
        "{err}"
    );
    let short: Vec<&[f32]> = good.iter().map(|v| &v[1..]).collect();
    let err = w
        .write_batch(&ContextBatch {
            hooks: &short,
            ..batch
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("has 7 values, expected 1 rows × 8"), "{err}");
    // The writer survives refused batches, and their rows are not in the statistics (the
    // first hook of the refused batch was fine, so it was counted before the refusal).
    let refs: Vec<&[f32]> = good.iter().map(|v| v.as_slice()).collect();
    w.write_batch(&ContextBatch {
        hooks: &refs,
        ..batch
    })
    .unwrap();
    let stats: Vec<_> = w.stats().iter().map(|s| s.stats()).collect();
    assert_eq!(stats.len(), hooks().len());
    for (s, h) in stats.iter().zip(hooks()) {
        assert_eq!(s.count, 1);
        assert_eq!(s.mean, vec![1.0; h.d]);
        assert!((s.mean_norm - (h.d as f64).sqrt()).abs() < 1e-12);
    }
    let info = w.finish().unwrap();
    assert_eq!(
        (info.rows, info.contexts, info.bytes),
        (1, 1, std::fs::metadata(&path).unwrap().len())
    );

    // The .tmp path cannot be created: the error names it.
    let blocked = dir.path().join("shard-00001.parquet");
    std::fs::create_dir(dir.path().join(".shard-00001.parquet.tmp")).unwrap();
    let err = ShardWriter::builder(hooks())
        .create(&blocked)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("shard-00001.parquet.tmp"), "{err}");
}

/// Loader throughput on ~200k rows of one d=768 f16 hook (GPT-2-small residual width), values
/// roughly Gaussian. Not a test of correctness; run it in release mode and read the printout:
/// `cargo test --release --test store -- --ignored --nocapture loader_throughput`.
#[test]
#[ignore = "timing; run by hand in release mode"]
fn loader_throughput() {
    const D: usize = 768;
    let ctx: u32 = 128;
    let contexts = 1600u64; // 204,800 rows
    let hook = "blocks.6.hook_resid_post";
    let dir = std::env::var("UNRAVEL_BENCH_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir.unwrap_or_else(|_| tmp.path().to_path_buf());
    let mut m = header(ctx as usize);
    m.hooks = vec![HookInfo {
        name: hook.into(),
        d: D,
        dtype: std::env::var("UNRAVEL_BENCH_DTYPE")
            .map_or(StorageDtype::F16, |s| s.parse().unwrap()),
    }];
    m.label_columns = vec![];
    // UNRAVEL_BENCH_DIR holding a dataset from an earlier run: skip writing (to profile reads).
    if !dir.join("__unravel__/manifest.json").exists() {
        write_bench_dataset(&dir, m, contexts, ctx);
    }
    read_bench(&dir, hook);
}

/// CPU seconds (user + system, all threads) this process has used; NaN where /proc is absent.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn write_bench_dataset(dir: &Path, m: Manifest, contexts: u64, ctx: u32) {
    use rand::{Rng, SeedableRng};
    use std::time::Instant;
    const D: usize = 768;
    const CONTEXTS_PER_BATCH: usize = 64;
    let mut w = DatasetWriter::create(dir, m, WriterOptions::default()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let scale: Vec<f32> = (0..D).map(|_| rng.random_range(0.2f32..3.0)).collect();
    let mut written = 0u64;
    let mut secs = 0.0;
    let mut cpu = 0.0;
    for first in (0..contexts).step_by(CONTEXTS_PER_BATCH) {
        let n = CONTEXTS_PER_BATCH * ctx as usize;
        let ids: Vec<u64> = (0..n).map(|r| first + (r / ctx as usize) as u64).collect();
        let pos: Vec<u32> = (0..n).map(|r| (r % ctx as usize) as u32).collect();
        let tids: Vec<u32> = (0..n).map(|r| (r * 7 % 50257) as u32).collect();
        let toks: Vec<String> = tids.iter().map(|t| format!("t{t}")).collect();
        let special: Vec<bool> = pos.iter().map(|&p| p == 0).collect();
        // Sum of three uniforms: roughly Gaussian, per-dimension scales.
        let acts: Vec<f32> = (0..n * D)
            .map(|i| {
                let u: f32 = rng.random::<f32>() + rng.random::<f32>() + rng.random::<f32>();
                (u - 1.5) * scale[i % D]
            })
            .collect();
        let t = Instant::now();
        let c = cpu_seconds();
        w.write_batch(&ContextBatch {
            context_ids: &ids,
            positions: &pos,
            token_ids: &tids,
            tokens: &toks,
            special: &special,
            labels: &[],
            hooks: &[&acts],
        })
        .unwrap();
        secs += t.elapsed().as_secs_f64();
        cpu += cpu_seconds() - c;
        written += n as u64;
    }
    let (t, c) = (Instant::now(), cpu_seconds());
    let m = w.finish().unwrap();
    secs += t.elapsed().as_secs_f64();
    cpu += cpu_seconds() - c;
    let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
    println!(
        "write: {written} rows in {secs:.2}s ({:.0} rows/s; {cpu:.1} CPU-s = {:.0} rows per \
         CPU-second; data generation excluded), {} shards, {:.0} bytes/row on disk ({:.0} raw f16)",
        written as f64 / secs,
        written as f64 / cpu,
        m.shards.len(),
        bytes as f64 / written as f64,
        (D * 2) as f64
    );
}

fn read_bench(dir: &Path, hook: &str) {
    use std::time::Instant;
    const D: usize = 768;
    let ds = Dataset::open(dir).unwrap();
    let t = Instant::now();
    ds.verify().unwrap();
    println!("verify: {:.2}s", t.elapsed().as_secs_f64());

    let info = ds.hook(hook).unwrap().clone();
    // Best of 3 (the machine may be busy).
    let reader = ds.shard_reader(0).unwrap();
    let mut best = f64::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        rows = 0;
        for rg in 0..reader.row_groups().len() {
            rows += reader.read_hook(&info, rg, false).unwrap().rows;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "decode (one thread, shard 0, best of 3): {rows} rows in {best:.3}s = {:.0} rows/s",
        rows as f64 / best
    );

    for (name, mode) in [
        ("shuffled", LoaderMode::Shuffled),
        ("single pass", LoaderMode::SinglePass),
    ] {
        let config = LoaderConfig {
            mode,
            ..LoaderConfig::new(hook, 4096)
        };
        // The first batch waits for a whole window; after it, decoding overlaps consumption.
        let t = Instant::now();
        let mut l = loader(&ds, &config);
        let first = l.next_batch().unwrap().unwrap().dims()[0] as u64;
        let latency = t.elapsed().as_secs_f64();
        let epochs = if mode == LoaderMode::Shuffled { 2 } else { 1 };
        let target = epochs * l.rows_per_epoch() - first;
        let (t, c) = (Instant::now(), cpu_seconds());
        let mut rows = 0u64;
        while rows < target {
            match l.next_batch().unwrap() {
                Some(b) => rows += b.dims()[0] as u64,
                None => break,
            }
        }
        let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        println!(
            "loader ({name}, batch 4096, window {}): first batch after {latency:.2}s, then \
             {rows} rows in {secs:.2}s = {:.0} rows/s, {:.0} rows per CPU-second ({:.0} MB/s \
             of f32)",
            config.shuffle_buffer,
            rows as f64 / secs,
            rows as f64 / cpu,
            rows as f64 * D as f64 * 4.0 / secs / 1e6
        );
    }
}

/// A full disk: the `.tmp` file is a link to /dev/full, where every write fails with ENOSPC.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_with_the_file_and_leaves_nothing_behind() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-00000.parquet");
    let tmp = dir.path().join(".shard-00000.parquet.tmp");
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let mut w = ShardWriter::builder(hooks()).create(&path).unwrap();
    let acts: Vec<Vec<f32>> = hooks().iter().map(|h| vec![0.25; 4 * h.d]).collect();
    let refs: Vec<&[f32]> = acts.iter().map(|v| v.as_slice()).collect();
    let tokens: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
    let batch = ContextBatch {
        context_ids: &[0, 0, 0, 0],
        positions: &[0, 1, 2, 3],
        token_ids: &[1, 2, 3, 4],
        tokens: &tokens,
        special: &[true, false, false, false],
        labels: &[],
        hooks: &refs,
    };
    // The bytes are buffered, so the failure may come from the write or from finish (writing
    // out the buffer).
    let err = match w.write_batch(&batch) {
        Err(e) => e,
        Ok(()) => w.finish().unwrap_err(),
    };
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Write { .. } | StoreError::Io { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("shard-00000.parquet.tmp") && msg.contains("No space left"),
        "{msg}"
    );
    assert!(
        !tmp.exists() && tmp.symlink_metadata().is_err(),
        "the .tmp was not removed"
    );
    assert!(!path.exists());
}
