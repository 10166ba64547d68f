//! Hostile corpora for `extract`: one huge single-line document (a .txt file, a .jsonl line
//! with the label before or after a 20 MB text field) streams in pieces with exactly the tokens
//! of whole-document tokenization and its label on every token; cutting text into pieces never
//! changes the tokens on the fixture corpora; zero and impossible sizes are refused in one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use arrow_array::{Array, BooleanArray, UInt32Array};
use common::unravel;
use unravel::corpus::read::cut_point;
use unravel::corpus::{BosPolicy, Context, Corpus, CorpusOptions, PackOptions, Packer};
use unravel::store::Dataset;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tokenizer(model: &str) -> PathBuf {
    repo(&format!("tests/fixtures/{model}/tokenizer.json"))
}

/// The project's real sentences: data/sentences.txt and the texts of data/corpus.jsonl.
fn real_sentences() -> Vec<String> {
    let mut out: Vec<String> = fs::read_to_string(repo("data/sentences.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for line in fs::read_to_string(repo("data/corpus.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        out.push(v["text"].as_str().unwrap().to_string());
    }
    out
}

/// About `bytes` of text on one logical line: the real sentences in a varying order, joined by
/// single and double spaces, with tabs, escapes-to-be (quotes, backslashes, newlines), digits,
/// accents and emoji mixed in, so that pieces start and end on every kind of character.
fn long_text(bytes: usize) -> String {
    let sentences = real_sentences();
    let extras = [
        " \"quoted\"",
        " back\\slash",
        "\nnew line",
        "\t tab",
        "  two spaces",
        " café 😀 naïve",
        " 3.14159",
        "   ",
    ];
    let mut text = String::with_capacity(bytes + 256);
    let mut x: u64 = 7;
    while text.len() < bytes {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&sentences[(x >> 33) as usize % sentences.len()]);
        text.push_str(extras[(x >> 20) as usize % extras.len()]);
    }
    text
}

fn whole_tokens(model: &str, text: &str) -> Vec<u32> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer(model)).unwrap();
    tok.encode(text, false).unwrap().get_ids().to_vec()
}

/// Tokens of `text` tokenized in pieces of at most `max` bytes cut by `cut_point`.
fn piecewise_tokens(model: &str, text: &str, max: usize) -> (Vec<u32>, usize) {
    let tok = tokenizers::Tokenizer::from_file(tokenizer(model)).unwrap();
    let (mut rest, mut ids, mut pieces) = (text, Vec::new(), 0);
    while !rest.is_empty() {
        let at = cut_point(rest, max);
        ids.extend_from_slice(tok.encode(&rest[..at], false).unwrap().get_ids());
        rest = &rest[at..];
        pieces += 1;
    }
    (ids, pieces)
}

/// The document tokens of packed contexts, in order (the specials the packer placed left out).
fn stream_tokens(contexts: &[Context]) -> Vec<u32> {
    contexts
        .iter()
        .flat_map(|c| {
            c.tokens
                .iter()
                .zip(&c.special)
                .filter(|(_, &s)| !s)
                .map(|(&t, _)| t)
        })
        .collect()
}

fn pack(corpus: &Path, options: &CorpusOptions, max_tokens: Option<u64>) -> Vec<Context> {
    let corpus = Corpus::open(corpus, options).unwrap();
    let pack = PackOptions {
        ctx: 128,
        bos: BosPolicy::EndOfText,
        max_tokens,
        start_context_id: 0,
    };
    let packer = Packer::new(corpus.documents(), &tokenizer("tiny-gpt2"), pack).unwrap();
    packer.collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn cutting_into_pieces_keeps_the_tokens_of_whole_tokenization() {
    let sentences = real_sentences();
    let texts = [
        sentences.join(" "),
        sentences.join("\n"),
        sentences.join("  \n\t "),
        long_text(40_000),
    ];
    for model in ["tiny-gpt2", "tiny-distilbert", "tiny-bert"] {
        for (t, text) in texts.iter().enumerate() {
            let whole = whole_tokens(model, text);
            for max in [97, 256, 1000, 4096] {
                let (pieces, n) = piecewise_tokens(model, text, max);
                assert_eq!(n > 1, text.len() > max, "{model} text {t}: pieces of {max}");
                assert_eq!(pieces, whole, "{model} text {t}, pieces of {max} bytes");
            }
        }
    }
}

#[test]
fn cut_point_prefers_whitespace_after_a_word_and_never_splits_a_character() {
    assert_eq!(cut_point("short", 10), 5);
    // The last place where whitespace follows a non-whitespace character, at or before 10.
    assert_eq!(cut_point("ab cd  ef gh ij", 10), 9);
    assert_eq!(cut_point("ab cd\n\nef gh", 8), 5);
    // No such place: the last character boundary (é is 2 bytes, so not at 5).
    assert_eq!(cut_point("aaaaé", 5), 4);
    assert_eq!(cut_point("😀😀", 2), 4);
}

/// A 20 MB single-line document, as a .txt file and as a .jsonl line whose label comes after or
/// before the text: `--max-tokens` gives the first tokens of whole-document tokenization, each
/// labelled, and the whole 1 MB prefix of it packs to exactly its whole tokenization.
#[test]
fn a_huge_single_line_document_streams_with_whole_document_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let text = long_text(20 << 20);
    let txt = dir.path().join("huge.txt");
    fs::write(&txt, &text).unwrap();
    let after = dir.path().join("after.jsonl");
    let line = serde_json::json!({"text": text, "topic": "whales"}).to_string();
    assert!(
        line.find("\"topic\"").unwrap() > 20 << 20,
        "label after text"
    );
    fs::write(
        &after,
        line + "\n{\"text\": \"next document\", \"topic\": 7}\n",
    )
    .unwrap();
    let before = dir.path().join("before.jsonl");
    let mut line = String::from("{\"id\": [1, {\"a\": \"}\"}], \"topic\": \"whales\", \"text\": ");
    line.push_str(&serde_json::to_string(&text).unwrap());
    line.push_str(", \"more\": null}");
    fs::write(&before, line).unwrap();

    let prefix = &text[..cut_point(&text, 256 << 10)];
    let expected = whole_tokens("tiny-gpt2", prefix);
    let labelled = CorpusOptions {
        label_fields: vec!["topic".into()],
        ..CorpusOptions::default()
    };
    let cases = [
        (&txt, CorpusOptions::default(), None),
        (&after, labelled.clone(), Some("whales")),
        (&before, labelled, Some("whales")),
    ];
    for (path, options, label) in cases {
        let contexts = pack(path, &options, Some(5000));
        assert_eq!(contexts.len(), 40, "{path:?}"); // ceil(5000 / 128)
        let tokens = stream_tokens(&contexts);
        assert_eq!(tokens.len(), 40 * 127);
        assert_eq!(tokens, expected[..tokens.len()], "{path:?}");
        for c in &contexts {
            for (i, &special) in c.special.iter().enumerate() {
                let want: Vec<Option<String>> = match label {
                    None => vec![],
                    Some(l) => vec![(!special).then(|| l.to_string())],
                };
                assert_eq!(c.labels[i], want, "{path:?}");
                assert_eq!(c.doc[i], (!special).then_some(0));
            }
        }
    }

    // The whole of a 1 MB single-line document, against its whole tokenization.
    let text = long_text(1 << 20);
    let path = dir.path().join("one.jsonl");
    fs::write(&path, serde_json::json!({ "text": text }).to_string()).unwrap();
    let tokens = stream_tokens(&pack(&path, &CorpusOptions::default(), None));
    let whole = whole_tokens("tiny-gpt2", &text);
    assert!(
        whole.len() - tokens.len() < 127,
        "only the partial tail is dropped"
    );
    assert_eq!(tokens, whole[..tokens.len()]);
}

/// Long .jsonl lines are checked as short ones are: the same messages for a missing or non-string
/// text field, a bad label, and broken syntax.
#[test]
fn a_bad_huge_jsonl_line_names_its_file_line_and_fault() {
    let dir = tempfile::tempdir().unwrap();
    let big = "word ".repeat(300_000); // 1.5 MB: over the long-line threshold
    let cases = [
        (
            format!("{{\"body\": \"{big}\"}}"),
            "no field `text` (fields: body)",
        ),
        (
            format!("{{\"body\": \"{big}\", \"text\": 5}}"),
            "field `text` is a number, not a string",
        ),
        (
            format!("{{\"text\": \"{big}\", \"topic\": [1]}}"),
            "label field `topic` is an array",
        ),
        (format!("{{\"text\": \"{big}\" x}}"), "not a JSON object"),
        (format!("{{\"text\": \"{big}"), "not a JSON object"),
    ];
    for (i, (line, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.jsonl"));
        fs::write(
            &path,
            format!("{{\"text\": \"ok\", \"topic\": 1}}\n{line}\n"),
        )
        .unwrap();
        let options = CorpusOptions {
            label_fields: vec!["topic".into()],
            ..CorpusOptions::default()
        };
        let corpus = Corpus::open(&path, &options).unwrap();
        let err = corpus
            .documents()
            .find_map(Result::err)
            .expect("should fail")
            .to_string();
        assert!(err.contains(&format!("bad{i}.jsonl: line 2: ")), "{err}");
        assert!(err.contains(needle), "{i}: `{needle}` not in {err}");
    }
    // A null text is an empty document, skipped and counted.
    let path = dir.path().join("null.jsonl");
    fs::write(
        &path,
        format!("{{\"pad\": \"{big}\", \"text\": null}}\n{{\"text\": \"a b\"}}\n"),
    )
    .unwrap();
    let corpus = Corpus::open(&path, &CorpusOptions::default()).unwrap();
    let mut docs = corpus.documents();
    let all: Vec<_> = docs.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].index, all[0].text.as_str()), (1, "a b"));
    assert_eq!(docs.stats().empty_skipped, 1);
}

/// `extract` on a 20 MB one-line .txt with `--max-tokens`: the shards hold the first tokens of
/// the whole document's tokenization, and the text-token count it prints is the dataset's.
#[test]
fn extract_of_a_huge_one_line_document_stores_whole_document_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let text = long_text(20 << 20);
    let corpus = dir.path().join("huge.txt");
    fs::write(&corpus, &text).unwrap();
    let out = dir.path().join("acts");
    let (c, o) = (common::p(&corpus), common::p(&out));
    let args = [
        "extract",
        "--model",
        "tests/fixtures/tiny-gpt2",
        "--corpus",
        &c,
        "--hooks",
        "blocks.0.hook_resid_post",
        "--ctx",
        "64",
        "--max-tokens",
        "3000",
        "--device",
        "cpu",
        "--out",
        &o,
    ];
    let r = common::ok(&args);
    let ds = Dataset::open(&out).unwrap();
    let m = ds.manifest();
    assert_eq!(m.totals.rows, 47 * 64); // ceil(3000 / 64) contexts
    assert!(
        r.stdout.contains(&format!(
            "extracted {} text tokens this run ({} rows with 47 BOS/separator tokens",
            m.totals.tokens, m.totals.rows
        )),
        "{}",
        r.stdout
    );
    let mut tokens = Vec::new();
    for i in 0..ds.shard_count() {
        let reader = ds.shard_reader(i).unwrap();
        for g in 0..reader.row_groups().len() {
            for b in reader.read_columns(g, &["token_id", "special"]).unwrap() {
                let ids = b.column(0).as_any().downcast_ref::<UInt32Array>().unwrap();
                let special = b.column(1).as_any().downcast_ref::<BooleanArray>().unwrap();
                for j in 0..b.num_rows() {
                    if !special.value(j) {
                        tokens.push(ids.value(j));
                    }
                }
            }
        }
    }
    let whole = whole_tokens("tiny-gpt2", &text[..cut_point(&text, 64 << 10)]);
    assert_eq!(tokens.len() as u64, m.totals.tokens);
    assert_eq!(tokens, whole[..tokens.len()]);
}

/// Zero and impossible sizes are refused before anything is read or written, in one line.
#[test]
fn zero_and_impossible_extract_sizes_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    fs::write(&corpus, "{\"text\": \"the cat sat on the mat\"}\n").unwrap();
    let out = dir.path().join("acts");
    let model = common::p(&repo("tests/fixtures/tiny-gpt2"));
    let (c, o) = (common::p(&corpus), common::p(&out));
    let cases: [(&[&str], &str); 6] = [
        (&["--batch", "0"], "error: --batch: is 0; give the number of contexts per forward pass (1 or more; default 8)"),
        (&["--shard-tokens", "0"], "error: --shard-tokens: is 0; give the rows per shard (1 or more; default 65536)"),
        (&["--ctx", "0"], "error: --ctx: 0 is too short for --bos endoftext; a context needs at least one text token besides the specials"),
        (&["--ctx", "1"], "error: --ctx: 1 is too short for --bos endoftext; a context needs at least one text token besides the specials"),
        (&["--max-tokens", "0"], "error: --max-tokens: is 0; give a positive number of tokens, or leave it out for the whole corpus"),
        (&["--ctx", "100000"], "error: --ctx: 100000 is longer than the model's 64 positions"),
    ];
    for (extra, message) in cases {
        let mut args = vec![
            "extract",
            "--model",
            &model,
            "--corpus",
            &c,
            "--hooks",
            "hook_embed",
            "--out",
            &o,
        ];
        args.extend_from_slice(extra);
        let r = unravel(&args, &[]);
        assert_ne!(r.code, 0, "{extra:?}");
        // Sizes clap's value parsers refuse (src/cli/values.rs) say so in their own words; the
        // rest are extract's own checks, word for word.
        let first = r.stderr.lines().next().unwrap_or("");
        let by_clap = format!("error: invalid value '{}' for '{}", extra[1], extra[0]);
        assert!(
            first == message || first.starts_with(&by_clap),
            "{extra:?}: {}",
            r.stderr
        );
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
}
