#!/usr/bin/env python3
"""Reference activations of all-MiniLM-L6-v2 from Hugging Face transformers.

Runs `BertModel.from_pretrained(FOLDER)` (eager attention, f32, eval, CPU) on the
texts of data/sentences.txt (one text per line, blank lines skipped), tokenized
with the folder's tokenizer as HF does by default ([CLS] ... [SEP], right-padded
batch with attention mask, token_type_ids all 0), and writes
FOLDER/reference.safetensors in the same layout as
tests/fixtures/reference/tiny-distilbert.safetensors: `input_ids` and
`attention_mask` (i64 [B,T]) and one f32 tensor per hook (`hook_embed`,
`hook_pos_embed`, `blocks.{i}.hook_resid_pre` ... `blocks.{i}.hook_resid_post`,
`ln_final.hook_normalized`), with string metadata. The hooks are recorded and
self-checked by run_bertmodel() in scripts/make_fixtures.py (the tiny-bert
fixture's code).

Run from the repository root, after scripts/fetch-minilm.sh:
    python3 scripts/make_minilm_reference.py [FOLDER] [--texts FILE] [--out FILE]
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets the HF offline env vars)

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

SCRIPT = "scripts/make_minilm_reference.py"
ROOT = mf.ROOT


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--texts", default=str(ROOT / "data" / "sentences.txt"))
    ap.add_argument("--out", default=None, help="default: FOLDER/reference.safetensors")
    ap.add_argument("--atol", type=float, default=1e-5,
                    help="tolerance of the self-checks (max |a-b| / max(1, |b|))")
    args = ap.parse_args()
    folder = Path(args.folder)
    out_path = Path(args.out) if args.out else folder / "reference.safetensors"
    if not (folder / "model.safetensors").is_file():
        sys.exit(f"make_minilm_reference: error: {folder}/model.safetensors missing (run scripts/fetch-minilm.sh)")

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    texts_path = Path(args.texts)
    texts = [line.rstrip("\r\n") for line in texts_path.read_text(encoding="utf-8").split("\n")]
    texts = [t for t in texts if t.strip()]
    assert texts, f"no texts in {texts_path}"

    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.padding_side = "right"
    # tokenizer.json of this model has fixed padding to 128 and truncation at 128
    # baked in; HF overrides both per call. The raw tokenizer, with them switched
    # off, must give the same ids.
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    baked = {"padding": raw.padding, "truncation": raw.truncation}
    raw.no_padding()
    raw.no_truncation()
    for t in texts:
        a = tok(t)["input_ids"]
        b = raw.encode(t, add_special_tokens=True).ids
        assert a == b, f"tokenizer mismatch for {t!r}:\n HF  {a}\n raw {b}"

    model, info = BertModel.from_pretrained(
        str(folder), attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    model.eval()
    assert not info["missing_keys"], info["missing_keys"]
    assert not info.get("mismatched_keys"), info["mismatched_keys"]
    cfg = model.config
    assert cfg.hidden_act == "gelu" and cfg.position_embedding_type == "absolute", cfg

    tensors, worst = mf.run_bertmodel(model, tok, texts=texts, atol=args.atol)

    meta = mf.metadata(folder.name, tok.pad_token_id, tok)
    rel_texts = texts_path.resolve()
    try:
        rel_texts = rel_texts.relative_to(ROOT)
    except ValueError:
        pass
    meta.update(
        generator=SCRIPT,
        sentences=f"{rel_texts} (one text per line, blank lines skipped)",
        texts=json.dumps(texts, ensure_ascii=False),
        token_type_ids="all 0 (HF default; not stored)",
        model_sha256=sha256(folder / "model.safetensors"),
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mf.save_ref(tensors, out_path, meta)

    # ---- summary ----
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    print(f"model: {folder}  ({len(keys)} tensors in model.safetensors; "
          f"unexpected when loading as BertModel: {sorted(info['unexpected_keys'])})")
    print(f"tokenizer.json baked-in settings (HF ignores; switch off in Rust): {baked}")
    m = tensors["attention_mask"]
    print(f"{len(texts)} texts, tokens per text {m.sum(1).tolist()}; "
          f"max padded-vs-single diff (abs, or rel where |x|>1) {worst:.2e}")
    for k, v in tensors.items():
        extra = ""
        if v.dtype == torch.float32:
            extra = f"max|x| (real tokens) {v[m.bool()].abs().max():.3g}"
        print(f"  {k:32s} {str(v.dtype):14s} {str(list(v.shape)):16s} {extra}")
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
