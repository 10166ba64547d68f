//! The corpus stage: readers (txt, jsonl, parquet), packing into contexts under each BOS policy,
//! the scale-out and resume helpers, the corpus hash and token display strings.
//! Tokenizers: the tiny fixtures under tests/fixtures (see tests/fixtures/README.md).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use unravel::corpus::{
    parse_part, part_owns, BosPolicy, Context, Corpus, CorpusError, CorpusFormat, CorpusOptions,
    Document, PackOptions, Packer, TokenText,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}/tokenizer.json"))
}

fn gpt2() -> PathBuf {
    fixture("tiny-gpt2")
}

fn bert() -> PathBuf {
    fixture("tiny-distilbert")
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, bytes).unwrap();
    path
}

fn labels(fields: &[&str]) -> CorpusOptions {
    CorpusOptions {
        label_fields: fields.iter().map(|s| s.to_string()).collect(),
        ..CorpusOptions::default()
    }
}

fn read_all(corpus: &Corpus) -> Vec<Document> {
    corpus.documents().collect::<Result<_, _>>().unwrap()
}

fn texts(docs: &[Document]) -> Vec<&str> {
    docs.iter().map(|d| d.text.as_str()).collect()
}

fn first_error(corpus: &Corpus) -> CorpusError {
    corpus
        .documents()
        .find_map(Result::err)
        .expect("reading should fail")
}

/// Deterministic documents of varied lengths (1 to ~60 tokens), some with labels.
fn sample_texts(n: usize) -> Vec<String> {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "token", "world", "is", "of", "to", "in",
        "red", "blue", "42", "zebra", "quietly", "ran", "over",
    ];
    (0..n)
        .map(|i| {
            let len = 1 + (i * 7 + 3) % 23;
            (0..len)
                .map(|j| words[(i * 5 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A jsonl corpus of `sample_texts(n)`, labels `topic` (string) and `id` (number).
fn jsonl_corpus(dir: &Path, n: usize) -> Corpus {
    let lines: Vec<String> = sample_texts(n)
        .iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::json!({"text": text, "topic": format!("t{}", i % 3), "id": i}).to_string()
        })
        .collect();
    let path = write(dir, "docs.jsonl", lines.join("\n") + "\n");
    Corpus::open(&path, &labels(&["topic", "id"])).unwrap()
}

fn pack(corpus: &Corpus, tokenizer: &Path, options: PackOptions) -> (Vec<Context>, Packer) {
    let mut packer = Packer::new(corpus.documents(), tokenizer, options).unwrap();
    let contexts = packer.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (contexts, packer)
}

/// Each document's tokens, by the tokenizer itself, one text at a time.
fn reference_tokens(tokenizer: &Path, docs: &[Document]) -> Vec<Vec<u32>> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer).unwrap();
    docs.iter()
        .map(|d| {
            tok.encode(d.text.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec()
        })
        .collect()
}

// ---------------------------------------------------------------- readers

#[test]
fn txt_folder_reads_every_file_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.txt", "second");
    write(dir.path(), "a.txt", "\u{FEFF}first");
    write(dir.path(), "sub/c.txt", "third");
    write(dir.path(), "README.md", "not a document");
    write(dir.path(), ".hidden.txt", "hidden");

    let corpus = Corpus::open(dir.path(), &CorpusOptions::default()).unwrap();
    assert_eq!(corpus.format(), CorpusFormat::Txt);
    assert_eq!(corpus.format().name(), "txt");
    let names: Vec<&str> = corpus.sources().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a.txt", "b.txt", "sub/c.txt"]);
    let docs = read_all(&corpus);
    assert_eq!(texts(&docs), ["first", "second", "third"]);
    assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(docs.iter().all(|d| d.labels.is_empty()));
}

#[test]
fn txt_glob_reads_matching_files_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.txt", "second");
    write(dir.path(), "a.txt", "first");
    write(dir.path(), "sub/c.txt", "third");
    let spec = dir.path().join("*.txt");
    let corpus = Corpus::open(&spec, &CorpusOptions::default()).unwrap();
    assert_eq!(texts(&read_all(&corpus)), ["first", "second"]);

    let none = Corpus::open(dir.path().join("*.jsonl"), &CorpusOptions::default()).unwrap_err();
    assert!(matches!(none, CorpusError::BadSpec { .. }), "{none}");
    let missing = Corpus::open(dir.path().join("nope"), &CorpusOptions::default()).unwrap_err();
    assert!(matches!(missing, CorpusError::NotFound(_)), "{missing}");
}

#[test]
fn mixed_formats_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", "first");
    write(dir.path(), "b.jsonl", "{\"text\": \"x\"}\n");
    let err = Corpus::open(dir.path(), &CorpusOptions::default()).unwrap_err();
    assert!(err.to_string().contains("mixes"), "{err}");
}

#[test]
fn jsonl_labels_become_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "docs.jsonl",
        concat!(
            "{\"text\": \"one\", \"label\": \"pos\", \"score\": 3, \"flag\": true}\n",
            "\n",
            "{\"text\": \"two\", \"label\": null, \"score\": 2.5}\r\n",
            "{\"text\": \"three\", \"label\": 7, \"flag\": false}",
        ),
    );
    let corpus = Corpus::open(&path, &labels(&["label", "score", "flag"])).unwrap();
    assert_eq!(corpus.format(), CorpusFormat::Jsonl);
    let docs = read_all(&corpus);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(texts(&docs), ["one", "two", "three"]);
    assert_eq!(docs[0].labels, [s("pos"), s("3"), s("true")]);
    assert_eq!(docs[1].labels, [None, s("2.5"), None]);
    assert_eq!(docs[2].labels, [s("7"), None, s("false")]);
    assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn jsonl_bad_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.jsonl",
        "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": \"broken\n",
    );
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    let err = first_error(&corpus);
    assert!(
        matches!(err, CorpusError::BadJsonl { line: 3, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("bad.jsonl") && message.contains("line 3"),
        "{message}"
    );

    let path = write(
        dir.path(),
        "field.jsonl",
        "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n",
    );
    let err = first_error(&Corpus::open(&path, &CorpusOptions::default()).unwrap());
    let message = err.to_string();
    assert!(
        matches!(err, CorpusError::BadJsonl { line: 2, .. }),
        "{message}"
    );
    assert!(
        message.contains("`text`") && message.contains("body"),
        "{message}"
    );

    let path = write(
        dir.path(),
        "label.jsonl",
        "{\"text\": \"ok\", \"tags\": [1]}\n",
    );
    let err = first_error(&Corpus::open(&path, &labels(&["tags"])).unwrap());
    assert!(
        matches!(err, CorpusError::BadJsonl { line: 1, .. }),
        "{err}"
    );
}

fn write_parquet(
    path: &Path,
    texts: &[Option<&str>],
    label: &[Option<i64>],
    compression: Compression,
) {
    let batch = RecordBatch::try_from_iter([
        (
            "text",
            Arc::new(StringArray::from(texts.to_vec())) as ArrayRef,
        ),
        (
            "label",
            Arc::new(Int64Array::from(label.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(100))
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_reads_text_and_label_columns_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    // 600 rows: several row groups (100) and record batches (256); row 5 null, row 6 empty.
    let owned: Vec<String> = (0..600).map(|i| format!("document number {i}")).collect();
    let mut text: Vec<Option<&str>> = owned.iter().map(|s| Some(s.as_str())).collect();
    text[5] = None;
    text[6] = Some("  ");
    let label: Vec<Option<i64>> = (0..600).map(|i| (i % 10 != 0).then_some(i % 2)).collect();
    write_parquet(
        &dir.path().join("train-00000.parquet"),
        &text,
        &label,
        Compression::UNCOMPRESSED,
    );
    let snappy = dir.path().join("train-00001.parquet");
    write_parquet(
        &snappy,
        &[Some("snappy one"), Some("snappy two")],
        &[Some(1), None],
        Compression::SNAPPY,
    );

    let corpus = Corpus::open(dir.path().join("train-*.parquet"), &labels(&["label"])).unwrap();
    assert_eq!(corpus.format(), CorpusFormat::Parquet);
    let mut docs = corpus.documents();
    let all: Vec<Document> = docs.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(docs.stats().empty_skipped, 2);
    assert_eq!(all.len(), 600);
    assert_eq!(all[0].text, "document number 0");
    assert_eq!(all[0].labels, [None]);
    assert_eq!(all[3].labels, [Some("1".to_string())]);
    // Indices count the skipped rows, so they are row numbers.
    assert_eq!(all[5].index, 7);
    assert_eq!(all[5].text, "document number 7");
    assert_eq!(all[597].text, "document number 599");
    assert_eq!(all[598].text, "snappy one");
    assert_eq!(all[598].index, 600);
    assert_eq!(all[599].labels, [None]);

    // A single snappy-compressed file on its own.
    let one = Corpus::open(&snappy, &labels(&["label"])).unwrap();
    assert_eq!(texts(&read_all(&one)), ["snappy one", "snappy two"]);

    let err = Corpus::open(&snappy, &labels(&["topic"])).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("train-00001.parquet") && message.contains("`topic`"),
        "{message}"
    );
    assert!(message.contains("label (Int64)"), "{message}");
    let options = CorpusOptions {
        text_field: "label".into(),
        ..CorpusOptions::default()
    };
    let err = Corpus::open(&snappy, &options).unwrap_err();
    assert!(err.to_string().contains("not string or binary"), "{err}");
}

#[test]
fn invalid_utf8_names_file_and_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", "fine");
    let bad = write(dir.path(), "b.txt", b"\xEF\xBB\xBFhello\xFFworld\xC3");
    let corpus = Corpus::open(dir.path(), &CorpusOptions::default()).unwrap();
    let err = first_error(&corpus);
    assert!(
        matches!(
            err,
            CorpusError::InvalidUtf8 {
                offset: 8, // after the 3-byte BOM and `hello`
                line: None,
                row: None,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&bad.display().to_string()), "{message}");
    assert!(
        message.contains("byte 8") && message.contains("--lossy"),
        "{message}"
    );

    let lossy = CorpusOptions {
        lossy: true,
        ..CorpusOptions::default()
    };
    let corpus = Corpus::open(dir.path(), &lossy).unwrap();
    let mut docs = corpus.documents();
    let all: Vec<Document> = docs.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(all[1].text, "hello\u{FFFD}world\u{FFFD}");
    assert_eq!(docs.stats().lossy_replacements, 2);

    // jsonl: the line and the offset from the start of the file.
    let path = write(
        dir.path(),
        "x.jsonl",
        b"{\"text\": \"ok\"}\n{\"text\": \"b\xE9\"}\n",
    );
    let err = first_error(&Corpus::open(&path, &CorpusOptions::default()).unwrap());
    assert!(
        matches!(
            err,
            CorpusError::InvalidUtf8 {
                offset: 26,
                line: Some(2),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("line 2"), "{err}");
    let all = read_all(&Corpus::open(&path, &lossy).unwrap());
    assert_eq!(all[1].text, "b\u{FFFD}");
}

#[test]
fn parquet_binary_text_is_checked_for_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.parquet");
    let text: Vec<&[u8]> = vec![b"fine", b"ab\xFFc"];
    let batch = RecordBatch::try_from_iter([(
        "text",
        Arc::new(arrow_array::BinaryArray::from(text)) as ArrayRef,
    )])
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let err = first_error(&Corpus::open(&path, &CorpusOptions::default()).unwrap());
    assert!(
        matches!(
            err,
            CorpusError::InvalidUtf8 {
                offset: 2,
                row: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("row 1"), "{err}");
    let lossy = CorpusOptions {
        lossy: true,
        ..CorpusOptions::default()
    };
    let docs = read_all(&Corpus::open(&path, &lossy).unwrap());
    assert_eq!(texts(&docs), ["fine", "ab\u{FFFD}c"]);
}

#[test]
fn empty_documents_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "docs.jsonl",
        "{\"text\": \"a\"}\n{\"text\": \"\"}\n{\"text\": \" \\n\\t\"}\n{\"text\": null}\n{\"text\": \"b\"}\n",
    );
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    let mut docs = corpus.documents();
    let all: Vec<Document> = docs.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(texts(&all), ["a", "b"]);
    assert_eq!(all[1].index, 4);
    let stats = docs.stats();
    assert_eq!((stats.documents, stats.empty_skipped), (2, 3));

    let txt = tempfile::tempdir().unwrap();
    write(txt.path(), "a.txt", "");
    write(txt.path(), "b.txt", "  \n");
    write(txt.path(), "c.txt", "text");
    let corpus = Corpus::open(txt.path(), &CorpusOptions::default()).unwrap();
    let mut docs = corpus.documents();
    assert_eq!(docs.by_ref().count(), 1);
    assert_eq!(docs.stats().empty_skipped, 2);
}

#[test]
fn corpus_hash_is_stable_and_tracks_content() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for dir in [one.path(), two.path()] {
        write(dir, "a.txt", "alpha");
        write(dir, "b.txt", "beta");
    }
    let open = |dir: &Path| Corpus::open(dir, &CorpusOptions::default()).unwrap();
    let hash = open(one.path()).sha256().to_string();
    assert_eq!(hash.len(), 64);
    assert_eq!(open(one.path()).sha256(), hash, "same files, same hash");
    assert_eq!(
        open(two.path()).sha256(),
        hash,
        "the folder's location is not hashed"
    );

    write(two.path(), "b.txt", "betA");
    assert_ne!(open(two.path()).sha256(), hash, "content change");
    write(two.path(), "b.txt", "beta");
    assert_eq!(open(two.path()).sha256(), hash);
    fs::rename(two.path().join("b.txt"), two.path().join("c.txt")).unwrap();
    assert_ne!(open(two.path()).sha256(), hash, "rename");
}

// ---------------------------------------------------------------- packing

/// Checks the invariants every context must satisfy under `bos` and returns, for each context,
/// its stream part (positions that are not the placed BOS/CLS/closing SEP).
fn check_contexts(
    contexts: &[Context],
    ctx: usize,
    bos: BosPolicy,
    sep: u32,
    first: Option<u32>,
) -> Vec<&[u32]> {
    let mut parts = Vec::new();
    for (i, c) in contexts.iter().enumerate() {
        assert_eq!(c.id, i as u64, "ids are consecutive");
        assert_eq!(c.tokens.len(), ctx);
        assert_eq!(
            (c.special.len(), c.doc.len(), c.labels.len()),
            (ctx, ctx, ctx)
        );
        for p in 0..ctx {
            assert_eq!(c.special[p], c.doc[p].is_none(), "special <=> no document");
            if c.special[p] {
                assert!(
                    c.labels[p].iter().all(Option::is_none),
                    "no labels on specials"
                );
            }
        }
        let (start, end) = match bos {
            BosPolicy::EndOfText => (1, ctx),
            BosPolicy::None => (0, ctx),
            BosPolicy::ClsSep => (1, ctx - 1),
        };
        if let Some(first) = first {
            assert!(
                c.special[0] && c.tokens[0] == first,
                "context {i} starts with the BOS/CLS"
            );
            assert!(
                !c.special[1],
                "no separator right after the BOS/CLS in context {i}"
            );
        }
        if bos == BosPolicy::ClsSep {
            assert!(
                c.special[ctx - 1] && c.tokens[ctx - 1] == sep,
                "ends with [SEP]"
            );
        }
        // Inside the stream part: a document change has exactly one separator between,
        // and a separator is always between two different documents (or at the part's end).
        for p in start..end {
            if c.special[p] {
                assert_eq!(
                    c.tokens[p], sep,
                    "the only special in the stream is the separator"
                );
                if p > start && p + 1 < end {
                    assert!(!c.special[p + 1], "one separator at a time");
                    assert!(c.doc[p - 1] < c.doc[p + 1], "separator between documents");
                }
            } else if p > start && !c.special[p - 1] {
                assert_eq!(
                    c.doc[p - 1],
                    c.doc[p],
                    "documents change only at a separator"
                );
            }
        }
        parts.push(&c.tokens[start..end]);
    }
    parts
}

#[test]
fn endoftext_policy_starts_each_context_with_bos_and_loses_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    let docs = read_all(&corpus);
    let reference = reference_tokens(&gpt2(), &docs);
    let options = PackOptions {
        ctx: 16,
        ..PackOptions::default()
    };
    let (contexts, packer) = pack(&corpus, &gpt2(), options);
    let stats = packer.stats();
    assert!(contexts.len() > 10);
    check_contexts(&contexts, 16, BosPolicy::EndOfText, 0, Some(0));

    // The non-special tokens, in order, are the documents' tokens, up to the dropped tail.
    let expected: Vec<u32> = reference.concat();
    let got: Vec<u32> = contexts
        .iter()
        .flat_map(|c| {
            c.tokens
                .iter()
                .zip(&c.special)
                .filter(|(_, s)| !**s)
                .map(|(t, _)| *t)
        })
        .collect();
    assert_eq!(
        got.len() as u64 + stats.dropped_tail_tokens,
        expected.len() as u64
    );
    assert_eq!(got, expected[..got.len()]);
    assert_eq!(stats.tokens, expected.len() as u64);
    assert_eq!(stats.contexts, contexts.len() as u64);
    assert_eq!(stats.documents, 40);
    assert!(!stats.stopped_at_max_tokens);

    // Each token carries its document's index and labels.
    for c in &contexts {
        for p in 0..16 {
            if let Some(d) = c.doc[p] {
                let doc = &docs[d as usize];
                assert_eq!(c.labels[p], doc.labels);
                assert_eq!(
                    c.labels[p][0].as_deref(),
                    Some(format!("t{}", d % 3).as_str())
                );
            }
        }
        let topics: Vec<Option<&str>> = c.label_column(0).collect();
        assert_eq!(topics[0], None);
    }
}

#[test]
fn none_policy_cuts_the_stream_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    let reference = reference_tokens(&gpt2(), &read_all(&corpus));
    let options = PackOptions {
        ctx: 16,
        bos: BosPolicy::None,
        ..PackOptions::default()
    };
    let (contexts, packer) = pack(&corpus, &gpt2(), options);
    check_contexts(&contexts, 16, BosPolicy::None, 0, None);

    // The stream: documents joined by <|endoftext|> (id 0), no leading or trailing separator.
    let stream: Vec<u32> = reference.join(&0u32);
    let got: Vec<u32> = contexts.iter().flat_map(|c| c.tokens.clone()).collect();
    assert_eq!(got, stream[..got.len()]);
    assert!(stream.len() - got.len() < 16);
    let tail_doc_tokens = stream[got.len()..].iter().filter(|&&t| t != 0).count() as u64;
    assert_eq!(packer.stats().dropped_tail_tokens, tail_doc_tokens);
}

#[test]
fn cls_sep_policy_wraps_each_context_and_separates_documents_with_sep() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    let reference = reference_tokens(&bert(), &read_all(&corpus));
    let options = PackOptions {
        ctx: 12,
        bos: BosPolicy::ClsSep,
        ..PackOptions::default()
    };
    let (contexts, packer) = pack(&corpus, &bert(), options);
    let parts = check_contexts(&contexts, 12, BosPolicy::ClsSep, 3, Some(2));
    assert!(contexts
        .iter()
        .all(|c| c.tokens[0] == 2 && c.tokens[11] == 3));

    // Joining the stream parts gives the documents joined by [SEP], minus the separators dropped
    // at context starts.
    let got: Vec<u32> = parts.concat();
    let expected: Vec<u32> = reference.concat();
    let doc_tokens: Vec<u32> = got.iter().copied().filter(|&t| t != 3).collect();
    assert_eq!(doc_tokens, expected[..doc_tokens.len()]);
    assert_eq!(
        doc_tokens.len() as u64 + packer.stats().dropped_tail_tokens,
        expected.len() as u64
    );
    assert!(got.contains(&3), "documents are separated by [SEP]");
}

#[test]
fn max_tokens_stops_after_the_context_that_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    let (all, _) = pack(
        &corpus,
        &gpt2(),
        PackOptions {
            ctx: 16,
            ..PackOptions::default()
        },
    );
    for (max_tokens, expected) in [(1, 1), (48, 3), (50, 4), (64, 4)] {
        let options = PackOptions {
            ctx: 16,
            max_tokens: Some(max_tokens),
            ..PackOptions::default()
        };
        let (contexts, packer) = pack(&corpus, &gpt2(), options);
        assert_eq!(contexts.len(), expected, "max_tokens {max_tokens}");
        assert_eq!(contexts, all[..expected]);
        assert!(packer.stats().stopped_at_max_tokens);
    }
    let err = Packer::new(
        corpus.documents(),
        &gpt2(),
        PackOptions {
            max_tokens: Some(0),
            ..PackOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("--max-tokens"), "{err}");
}

#[test]
fn parts_partition_context_ids_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    let (all, _) = pack(
        &corpus,
        &gpt2(),
        PackOptions {
            ctx: 16,
            ..PackOptions::default()
        },
    );
    for n in 1..=4 {
        for c in &all {
            let owners = (1..=n).filter(|&i| part_owns(c.id, (i, n))).count();
            assert_eq!(owners, 1, "context {} of {n} parts", c.id);
        }
        // Each part's packer sees the same ids and contents.
        let mut union: Vec<Context> = Vec::new();
        for i in 1..=n {
            let (contexts, _) = pack(
                &corpus,
                &gpt2(),
                PackOptions {
                    ctx: 16,
                    ..PackOptions::default()
                },
            );
            union.extend(contexts.into_iter().filter(|c| part_owns(c.id, (i, n))));
        }
        union.sort_by_key(|c| c.id);
        assert_eq!(union, all);
    }
    assert!(!part_owns(0, (0, 2)) && !part_owns(0, (3, 2)));
    assert_eq!(parse_part("2/4").unwrap(), (2, 4));
    for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
        assert!(parse_part(bad).is_err(), "{bad}");
    }
}

#[test]
fn start_context_id_skips_to_identical_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 40);
    for bos in [BosPolicy::EndOfText, BosPolicy::None] {
        let options = PackOptions {
            ctx: 16,
            bos,
            ..PackOptions::default()
        };
        let (all, _) = pack(&corpus, &gpt2(), options.clone());
        let (later, packer) = pack(
            &corpus,
            &gpt2(),
            PackOptions {
                start_context_id: 5,
                ..options
            },
        );
        assert_eq!(later, all[5..]);
        assert_eq!(packer.stats().contexts, all.len() as u64);
        assert_eq!(packer.stats().contexts_emitted, all.len() as u64 - 5);
    }
}

#[test]
fn empty_or_short_corpora_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "empty.jsonl",
        "{\"text\": \"\"}\n{\"text\": \"  \"}\n",
    );
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    let mut packer = Packer::new(corpus.documents(), &gpt2(), PackOptions::default()).unwrap();
    let err = packer.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            CorpusError::NoTokens {
                documents: 0,
                empty: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(packer.next().is_none());

    let path = write(dir.path(), "short.jsonl", "{\"text\": \"the cat\"}\n");
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    let mut packer = Packer::new(corpus.documents(), &gpt2(), PackOptions::default()).unwrap();
    let err = packer.next().unwrap().unwrap_err();
    assert!(
        matches!(err, CorpusError::TooShort { ctx: 128, .. }),
        "{err}"
    );
}

#[test]
fn bad_pack_options_and_missing_specials_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = jsonl_corpus(dir.path(), 3);
    let err = Packer::new(
        corpus.documents(),
        &gpt2(),
        PackOptions {
            bos: BosPolicy::ClsSep,
            ..PackOptions::default()
        },
    )
    .err()
    .unwrap();
    let message = err.to_string();
    assert!(
        matches!(err, CorpusError::MissingSpecialToken { .. }),
        "{message}"
    );
    assert!(
        message.contains("[CLS]") && message.contains("tokenizer.json"),
        "{message}"
    );

    let err = Packer::new(
        corpus.documents(),
        &bert(),
        PackOptions {
            ctx: 2,
            bos: BosPolicy::ClsSep,
            ..PackOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("--ctx"), "{err}");
    assert_eq!("cls-sep".parse::<BosPolicy>().unwrap(), BosPolicy::ClsSep);
    assert!("bos".parse::<BosPolicy>().is_err());
}

#[test]
fn packer_can_run_on_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Packer>();
    assert_send::<TokenText>();
}

// ---------------------------------------------------------------- token text

#[test]
fn token_text_decodes_single_ids() {
    let gpt2_text = TokenText::from_file(&gpt2()).unwrap();
    assert_eq!(gpt2_text.len(), 512);
    assert_eq!(gpt2_text.get(0), "<|endoftext|>");
    assert_eq!(gpt2_text.get(262), " the"); // Ġthe
    assert_eq!(gpt2_text.get(221), " "); // Ġ
    assert_eq!(gpt2_text.get(159), "<0xE2>"); // â: a lone byte of a multi-byte character
    assert_eq!(gpt2_text.get(100_000), "");

    let bert_text = TokenText::from_file(&bert()).unwrap();
    assert_eq!(bert_text.get(2), "[CLS]");
    assert_eq!(bert_text.get(3), "[SEP]");
    assert_eq!(bert_text.get(94), "the");
    let tok = tokenizers::Tokenizer::from_file(bert()).unwrap();
    let er = tok.token_to_id("##er").unwrap();
    assert_eq!(bert_text.get(er), "##er");
}

#[test]
fn separator_at_a_context_start_is_dropped_after_bos_or_cls() {
    // Three documents of exactly 3 tokens each, and contexts with 3 stream slots: every
    // separator falls at a context start.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "docs.jsonl",
        "{\"text\": \" the the the\"}\n".repeat(3),
    );
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    for (tokenizer, bos, ctx) in [
        (gpt2(), BosPolicy::EndOfText, 4),
        (bert(), BosPolicy::ClsSep, 5),
    ] {
        let doc = &reference_tokens(&tokenizer, &read_all(&corpus))[0];
        assert_eq!(
            doc.len(),
            3,
            "fixture assumption: ` the the the` is 3 tokens"
        );
        let (contexts, packer) = pack(
            &corpus,
            &tokenizer,
            PackOptions {
                ctx,
                bos,
                ..PackOptions::default()
            },
        );
        assert_eq!(contexts.len(), 3, "{bos:?}");
        for (i, c) in contexts.iter().enumerate() {
            assert_eq!(
                &c.tokens[1..4],
                doc.as_slice(),
                "{bos:?}: no separator after the BOS/CLS"
            );
            assert_eq!(c.doc[1..4], [Some(i as u64); 3]);
        }
        assert_eq!(packer.stats().dropped_tail_tokens, 0);
    }
    // Without a BOS the stream is cut as it is: [d0 <eot>] [d1 <eot>], d2 is the dropped tail.
    let (contexts, packer) = pack(
        &corpus,
        &gpt2(),
        PackOptions {
            ctx: 4,
            bos: BosPolicy::None,
            ..PackOptions::default()
        },
    );
    assert_eq!(contexts.len(), 2);
    assert!(contexts
        .iter()
        .all(|c| c.tokens[3] == 0 && c.special == [false, false, false, true]));
    assert_eq!(packer.stats().dropped_tail_tokens, 3);
}

/// A hub cache laid out as hf-hub writes it, with one dataset repo of two parquet files.
fn fake_hub_dataset(root: &Path, texts: &[&str]) -> PathBuf {
    let repo = root.join("hub/datasets--acme--reviews");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit).join("plain_text");
    fs::create_dir_all(&snap).unwrap();
    let t: Vec<Option<&str>> = texts.iter().copied().map(Some).collect();
    let l: Vec<Option<i64>> = (0..texts.len() as i64).map(|i| Some(i % 2)).collect();
    write_parquet(
        &snap.join("train-00000-of-00001.parquet"),
        &t,
        &l,
        Compression::SNAPPY,
    );
    write_parquet(
        &snap.join("test-00000-of-00001.parquet"),
        &t[..2],
        &l[..2],
        Compression::SNAPPY,
    );
    snap.join("train-00000-of-00001.parquet")
}

fn unravel_env(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_unravel"));
    c.args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn hub_datasets_are_read_from_the_hub_cache_offline_like_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let owned = sample_texts(40);
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let local = fake_hub_dataset(&hf, &texts);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2");
    let model = model.to_string_lossy().into_owned();
    let extract = |corpus: &str, out: &Path| {
        let o = out.to_string_lossy().into_owned();
        unravel_env(
            &[
                "extract",
                "--model",
                &model,
                "--corpus",
                corpus,
                "--label-field",
                "label",
                "--hooks",
                "blocks.0.hook_resid_post",
                "--ctx",
                "32",
                "--out",
                &o,
            ],
            &[("HF_HOME", &hf)],
        )
    };
    let tokens = |out: &Path| {
        let m: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(out.join("__unravel__/manifest.json")).unwrap(),
        )
        .unwrap();
        m["totals"]["tokens"].as_u64().unwrap()
    };
    // The train split by glob, against the same file read locally.
    let hub_out = dir.path().join("hub-acts");
    let r = extract(
        "hf://datasets/acme/reviews/plain_text/train-*.parquet",
        &hub_out,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let local_out = dir.path().join("local-acts");
    let r = extract(&local.to_string_lossy(), &local_out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(tokens(&hub_out), tokens(&local_out));
    assert!(tokens(&hub_out) > 200);
    // The default glob takes every parquet file: both splits, in path order (test before train).
    let both = dir.path().join("both");
    let r = extract("hf://datasets/acme/reviews", &both);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(tokens(&both) > tokens(&hub_out));

    // A glob that picks nothing, and a repo that is not cached, fail with one clear line.
    let r = extract(
        "hf://datasets/acme/reviews/nope/*.parquet",
        &dir.path().join("x"),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("hf://datasets/acme/reviews/nope/*.parquet")
            && err.contains("no file matches")
            && err.contains("plain_text/train-00000-of-00001.parquet"),
        "{err}"
    );
    let r = extract("hf://datasets/acme/missing", &dir.path().join("y"));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("not in the hub cache") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
