#!/usr/bin/env python3
"""Build the tiny random test models and their reference activations.

Makes tests/fixtures/{tiny-gpt2,tiny-distilbert,tiny-bert}/ (Hugging Face
model folders with a locally trained tokenizer) and tests/fixtures/reference/
(sentences.json plus one safetensors file of hook activations per model), and
tests/fixtures/README.md. Fully offline and deterministic (fixed seeds).

Run from the repository root:  python3 scripts/make_fixtures.py [--only NAME,...]
Needs torch, transformers, tokenizers, safetensors. CI never runs this; the
generated files are committed.

Weights and tokenizers are bit-reproducible, but the reference activations may
differ in the last bits between CPUs (different SIMD kernels). `--only tiny-bert`
(comma-separated names from MODELS) rebuilds just those models' folders and
reference files, leaving the other fixtures untouched; README.md and
reference/sentences.json are always rewritten (their content is deterministic).
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
)
from transformers.pytorch_utils import Conv1D

SCRIPT = "scripts/make_fixtures.py"
ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
GPT2_DIR = FIX / "tiny-gpt2"
BERT_DIR = FIX / "tiny-distilbert"
BERTM_DIR = FIX / "tiny-bert"
REF_DIR = FIX / "reference"

SEED = 1234
VOCAB_TARGET = 512
N_LAYER = 3
N_POS = 64
D_MODEL = 32
N_HEAD = 4
D_MLP = 128
D_MLP_BERT = 64  # tiny-bert's intermediate_size (differs from d_model * 4 on purpose)
TYPE_VOCAB = 2
MODELS = ["tiny-gpt2", "tiny-distilbert", "tiny-bert"]

LINEAR_STD = 0.3  # Linear / Conv1D weights
EMBED_STD = 0.5  # token and position embeddings
BIAS_STD = 0.1  # every bias, LayerNorm bias, and LayerNorm weight noise around 1

ENDOFTEXT = "<|endoftext|>"
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Training text for the tokenizers (deliberately varied; covers every character
# used in the reference sentences).
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A small model can still learn a surprising amount of structure.",
    "Interpretability tools let us look inside neural networks.",
    "In 2023, the cafe on 5th Street served 42 cups of coffee before 9:30 a.m.",
    "The café on the corner sells croissants, tea, and fresh bread.",
    "She said: \"Don't touch the red button!\"",
    "Why do models mix UPPER and lower case letters?",
    "Numbers like 3.14159, 2.71828 and 1,000,000 appear in text.",
    "The meeting starts at 10:45 and ends at 12:15 on Monday.",
    "Attention heads move information between token positions.",
    "Each layer adds its output to the residual stream.",
    "The MLP neurons fire on specific patterns in the input.",
    "Transformers were introduced in the paper Attention Is All You Need.",
    "GPT-2 predicts the next token; BERT fills in masked tokens.",
    "My naïve friend visited Zürich, Paris and São Paulo last year.",
    "The résumé listed three jobs, two degrees and one hobby.",
    "First line of the note.\nSecond line of the note.",
    "Hello, world! Hello again, world?",
    "It was the best of times, it was the worst of times.",
    "Call me at 555-0123 or email hello@example.com today.",
    "The temperature dropped to -5 degrees (about 23 F) overnight.",
    "We measured 7 samples; the mean was 0.25 and the variance 0.01.",
    "Rivers flow to the sea, and the sea returns as rain.",
    "Please sign here, here, and here -- then we are done.",
    "The cat sat on the mat while the dog slept by the door.",
    "Sparse autoencoders find features in the activations.",
    "Logit lens projects intermediate states onto the vocabulary.",
    "Activation patching swaps one run's activations into another.",
    "Children played in the park until the sun went down.",
    "The library opens at 8 and closes at 20 on weekdays.",
    "An apple a day keeps the doctor away, or so they say.",
    "Is this the real life? Is this just fantasy?",
    "The train to Berlin leaves from platform 4 at 6:05.",
    "Data, code, and compute: the three ingredients of deep learning.",
    "Mount Everest is 8,849 meters tall.",
    "The old man and the sea is a short novel.",
    "Good morning! How are you doing today?",
    "Please don't forget to bring your umbrella; it's raining.",
    "The year 1969 saw the first humans walk on the Moon.",
    "She counted: one, two, three, four, five, six, seven.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The committee will vote on the proposal next Tuesday.",
    "Our tiny network has three layers and four heads.",
    "Every word here is a token, or maybe several tokens.",
    "Hyphenated words like state-of-the-art are tricky.",
    "Quotes 'single' and \"double\" both appear sometimes.",
    "Brackets [like these] and braces {like those} exist too.",
    "Percentages such as 50% or 99.9% are common in reports.",
    "The price is $19.99, or EUR 18.50 with the discount.",
    "Look up, look down, look all around.",
    "Sometimes  there are  two spaces between words.",
    "Tabs\tand newlines\nare whitespace as well.",
    "The quick red fox and the slow brown bear met at noon.",
    "Birds sing in the morning and owls hoot at night.",
    "Learning rates of 0.001 or 3e-4 are typical.",
    "They walked, talked, laughed and finally went home.",
    "A journey of a thousand miles begins with a single step.",
    "The jury found the evidence convincing and unanimous.",
    "Quiet zebras jog past vexing wizards at dawn.",
    "X marks the spot; Y is the answer; Z is the end.",
    "Kilometers, kilograms and kelvins are SI units.",
    "The end.",
]

# Reference inputs: 3..~40 tokens; digits, punctuation, capitals, an accented
# word, a newline inside one text, double spaces.
SENTENCES = [
    "Hello!",
    "The quick brown fox jumps over the lazy dog.",
    "In 2023, the café on 5th Street served 42 cups of coffee.",
    "First line of the note.\nSecond line,  with  double spaces.",
    "WHY do Models Mix UPPER and lower CASE letters?",
    "Attention heads move information between positions, and each layer adds its "
    "output to the residual stream.",
]

PAD_NOTE = (
    "Batch is right-padded. Padded positions hold whatever HF computed there; "
    "tests only compare real tokens (attention_mask == 1)."
)


# ----------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------


def train_gpt2_tokenizer() -> Tokenizer:
    def once():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_TARGET,
            min_frequency=1,
            special_tokens=[ENDOFTEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(CORPUS, trainer=trainer)
        return tok

    # With the full 256-byte initial alphabet the BPE trainer's ids (and so its
    # tie-breaking) are fixed; check that it really is reproducible.
    tok = once()
    assert tok.to_str() == once().to_str(), "BPE trainer is not deterministic"
    return tok


def wordpiece_vocab(words: dict, size: int) -> dict:
    """Deterministic BPE-style WordPiece vocabulary (like tokenizers'
    WordPieceTrainer, whose '##x' ids and tie-breaking depend on hash order)."""
    vocab = list(BERT_SPECIALS)
    firsts = sorted({w[0] for w in words})
    conts = sorted({"##" + c for w in words for c in w[1:]})
    vocab += firsts + [c for c in conts if c not in vocab]
    seen = set(vocab)
    splits = {w: [w[0]] + ["##" + c for c in w[1:]] for w in words}
    while len(vocab) < size:
        pairs = {}
        for w, n in words.items():
            sym = splits[w]
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda k: (-pairs[k], k))  # most frequent, then lexicographic
        merged = best[0] + best[1][2:]
        if merged not in seen:
            seen.add(merged)
            vocab.append(merged)
        for w, sym in splits.items():
            i, out = 0, []
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            splits[w] = out
    return {t: i for i, t in enumerate(vocab)}


def train_bert_tokenizer() -> Tokenizer:
    # As bert-base-uncased: lowercase, strip_accents=None (=> follows lowercase).
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = {}
    for text in CORPUS:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            words[w] = words.get(w, 0) + 1
    vocab = wordpiece_vocab(dict(sorted(words.items())), VOCAB_TARGET)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(BERT_SPECIALS)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def check_tokenizer(folder: Path, texts):
    """HF AutoTokenizer and raw tokenizers.Tokenizer.from_file must agree."""
    hf = AutoTokenizer.from_pretrained(str(folder))
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for t in texts:
        a = hf(t)["input_ids"]
        b = raw.encode(t, add_special_tokens=True).ids
        assert a == b, f"tokenizer mismatch in {folder.name} for {t!r}:\n HF  {a}\n raw {b}"
    return hf


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------


@torch.no_grad()
def reinit(model: nn.Module, seed: int):
    """Large, non-trivial random weights so that any mistake shows up clearly."""
    g = torch.Generator().manual_seed(seed)

    def normal_(p, mean, std):
        p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std + mean)

    done = set()
    for _, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in done:  # tied weight (lm_head / vocab_projector = token embedding)
                continue
            done.add(id(p))
            if isinstance(mod, nn.Embedding):
                normal_(p, 0.0, EMBED_STD)
            elif isinstance(mod, (nn.Linear, Conv1D)):
                normal_(p, 0.0, LINEAR_STD if pname == "weight" else BIAS_STD)
            elif isinstance(mod, nn.LayerNorm):
                normal_(p, 1.0 if pname == "weight" else 0.0, BIAS_STD)
            else:
                raise RuntimeError(f"unexpected parameter {pname} in {type(mod).__name__}")
    all_params = {id(p) for p in model.parameters()}
    assert all_params == done, "some parameter was not re-initialised"


def save_model(model, tok_hf, folder: Path):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok_hf.save_pretrained(str(folder))


# ----------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.acts = {}
        self.handles = []

    def _put(self, name, t):
        if isinstance(t, (tuple, list)):
            t = t[0]
        assert name not in self.acts, f"hook {name} fired twice"
        self.acts[name] = t.detach().float().clone()

    def out(self, module, name):
        self.handles.append(module.register_forward_hook(lambda m, i, o: self._put(name, o)))

    def inp(self, module, name, kwarg="hidden_states"):
        def pre(m, args, kwargs):
            self._put(name, args[0] if args else kwargs[kwarg])

        self.handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))

    def reset(self):
        self.acts = {}

    def remove(self):
        for h in self.handles:
            h.remove()


def gpt2_recorder(model: GPT2LMHeadModel) -> Recorder:
    r = Recorder()
    tr = model.transformer
    r.out(tr.wte, "hook_embed")
    r.out(tr.wpe, "hook_pos_embed")
    for i, blk in enumerate(tr.h):
        p = f"blocks.{i}."
        r.inp(blk, p + "hook_resid_pre")
        r.out(blk.attn, p + "hook_attn_out")
        r.inp(blk.ln_2, p + "hook_resid_mid", kwarg="input")
        r.out(blk.mlp.c_fc, p + "mlp.hook_pre")
        r.out(blk.mlp.act, p + "mlp.hook_post")
        r.out(blk.mlp, p + "hook_mlp_out")
        r.out(blk, p + "hook_resid_post")
    r.out(tr.ln_f, "ln_final.hook_normalized")
    return r


def bert_recorder(model: DistilBertForMaskedLM) -> Recorder:
    r = Recorder()
    emb = model.distilbert.embeddings
    r.out(emb.word_embeddings, "hook_embed")
    r.out(emb.position_embeddings, "hook_pos_embed")
    for i, blk in enumerate(model.distilbert.transformer.layer):
        p = f"blocks.{i}."
        r.inp(blk, p + "hook_resid_pre")
        r.out(blk.attention, p + "hook_attn_out")
        r.out(blk.sa_layer_norm, p + "hook_resid_mid")
        r.out(blk.ffn.lin1, p + "mlp.hook_pre")
        r.out(blk.ffn.activation, p + "mlp.hook_post")
        r.out(blk.ffn.lin2, p + "hook_mlp_out")
        r.out(blk.output_layer_norm, p + "hook_resid_post")
    return r


def bertmodel_recorder(model: BertModel) -> Recorder:
    """Same hook names and meanings as bert_recorder (post-LN encoder)."""
    r = Recorder()
    emb = model.embeddings
    r.out(emb.word_embeddings, "hook_embed")
    r.out(emb.position_embeddings, "hook_pos_embed")  # token_type_embeddings are not recorded
    for i, blk in enumerate(model.encoder.layer):
        p = f"blocks.{i}."
        r.inp(blk, p + "hook_resid_pre")
        r.out(blk.attention.output.dense, p + "hook_attn_out")
        r.out(blk.attention.output.LayerNorm, p + "hook_resid_mid")
        r.out(blk.intermediate.dense, p + "mlp.hook_pre")
        act = blk.intermediate.intermediate_act_fn
        r.out(act if isinstance(act, nn.Module) else blk.intermediate, p + "mlp.hook_post")
        r.out(blk.output.dense, p + "hook_mlp_out")
        r.out(blk.output.LayerNorm, p + "hook_resid_post")
    return r


def hook_names(n_layer, final=True):
    names = ["hook_embed", "hook_pos_embed"]
    for i in range(n_layer):
        for s in [
            "hook_resid_pre",
            "hook_attn_out",
            "hook_resid_mid",
            "mlp.hook_pre",
            "mlp.hook_post",
            "hook_mlp_out",
            "hook_resid_post",
        ]:
            names.append(f"blocks.{i}.{s}")
    if final:
        names.append("ln_final.hook_normalized")
    return names


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ln(mod, x):
    """LayerNorm without triggering the module's hooks."""
    return nn.functional.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def close(a, b, atol=1e-5, what=""):
    """max |a-b| / max(1, |b|) <= atol (absolute below 1, relative above)."""
    d = ((a - b).abs() / b.abs().clamp(min=1.0)).max().item()
    assert d <= atol, f"{what}: max scaled diff {d:.3e} > {atol}"
    return d


# ----------------------------------------------------------------------------
# Reference runs
# ----------------------------------------------------------------------------


@torch.no_grad()
def run_gpt2(model, tok):
    enc = tok(SENTENCES, padding=True, return_tensors="pt", return_attention_mask=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    B, T = ids.shape
    L, V = model.config.n_layer, model.config.vocab_size
    rec = gpt2_recorder(model)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    acts = rec.acts
    acts["hook_pos_embed"] = acts["hook_pos_embed"].expand(B, T, D_MODEL)
    names = hook_names(L)
    assert sorted(acts) == sorted(names), sorted(set(acts) ^ set(names))
    logits = out.logits.float()

    # internal consistency
    hs = out.hidden_states
    assert len(hs) == L + 1
    for i in range(L):
        close(hs[i], acts[f"blocks.{i}.hook_resid_pre"], 0, f"hidden_states[{i}]")
        p = f"blocks.{i}."
        close(acts[p + "hook_resid_mid"], acts[p + "hook_resid_pre"] + acts[p + "hook_attn_out"], 1e-5, "resid_mid")
        close(acts[p + "hook_resid_post"], acts[p + "hook_resid_mid"] + acts[p + "hook_mlp_out"], 1e-5, "resid_post")
        close(acts[p + "mlp.hook_post"], gelu_new(acts[p + "mlp.hook_pre"]), 1e-5, "gelu_new")
        if i + 1 < L:
            close(acts[p + "hook_resid_post"], acts[f"blocks.{i + 1}.hook_resid_pre"], 0, "post->pre")
    close(hs[L], acts["ln_final.hook_normalized"], 0, "hidden_states[-1] (ln_f applied)")
    close(acts["blocks.0.hook_resid_pre"], acts["hook_embed"] + acts["hook_pos_embed"], 1e-6, "embed sum")
    close(acts["ln_final.hook_normalized"], ln(model.transformer.ln_f, acts[f"blocks.{L - 1}.hook_resid_post"]), 1e-6, "ln_f")
    close(logits, acts["ln_final.hook_normalized"] @ model.transformer.wte.weight.T, 1e-4, "tied unembed")

    # per-token cross-entropy (nats) of predicting t+1 from t
    lens = mask.sum(1)
    logp = torch.log_softmax(logits.double(), dim=-1)
    ce = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        n = int(lens[b])
        for t in range(n - 1):
            ce[b, t] = -logp[b, t, ids[b, t + 1]]
    ce = ce.float()

    # padded batch == each sentence alone, on real tokens
    acts_all = dict(acts, logits=logits)
    worst = 0.0
    for b, s in enumerate(SENTENCES):
        n = int(lens[b])
        e1 = tok(s, return_tensors="pt")
        assert e1["input_ids"][0].tolist() == ids[b, :n].tolist()
        rec.reset()
        o1 = model(input_ids=e1["input_ids"])
        single = dict(rec.acts, logits=o1.logits.float())
        single["hook_pos_embed"] = single["hook_pos_embed"].expand(1, n, D_MODEL)
        for k, v in acts_all.items():
            worst = max(worst, close(v[b, :n], single[k][0], 1e-5, f"single {k} row {b}"))
    rec.remove()

    tensors = {"input_ids": ids.long(), "attention_mask": mask.long()}
    for k in names:
        tensors[k] = acts[k]
    tensors["logits"] = logits
    tensors["token_ce"] = ce
    return tensors, worst


@torch.no_grad()
def run_bert(model, tok):
    enc = tok(SENTENCES, padding=True, return_tensors="pt", return_attention_mask=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    B, T = ids.shape
    L = model.config.n_layers
    rec = bert_recorder(model)
    out = model.distilbert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    acts = rec.acts
    acts["hook_pos_embed"] = acts["hook_pos_embed"].expand(B, T, D_MODEL)
    acts["ln_final.hook_normalized"] = out.last_hidden_state.float().clone()
    names = hook_names(L)
    assert sorted(acts) == sorted(names), sorted(set(acts) ^ set(names))

    hs = out.hidden_states
    assert len(hs) == L + 1
    for i in range(L):
        p = f"blocks.{i}."
        close(hs[i], acts[p + "hook_resid_pre"], 0, f"hidden_states[{i}]")
        close(hs[i + 1], acts[p + "hook_resid_post"], 0, f"hidden_states[{i + 1}]")
        close(acts[p + "mlp.hook_post"], gelu_erf(acts[p + "mlp.hook_pre"]), 1e-5, "gelu(erf)")
        blk = model.distilbert.transformer.layer[i]
        close(acts[p + "hook_resid_mid"], ln(blk.sa_layer_norm, acts[p + "hook_attn_out"] + acts[p + "hook_resid_pre"]), 1e-5, "sa_ln")
        close(acts[p + "hook_resid_post"], ln(blk.output_layer_norm, acts[p + "hook_mlp_out"] + acts[p + "hook_resid_mid"]), 1e-5, "out_ln")
    emb = model.distilbert.embeddings
    close(acts["blocks.0.hook_resid_pre"], ln(emb.LayerNorm, acts["hook_embed"] + acts["hook_pos_embed"]), 1e-5, "emb ln")
    close(acts["ln_final.hook_normalized"], acts[f"blocks.{L - 1}.hook_resid_post"], 0, "ln_final")

    lens = mask.sum(1)
    worst = 0.0
    for b, s in enumerate(SENTENCES):
        n = int(lens[b])
        e1 = tok(s, return_tensors="pt")
        assert e1["input_ids"][0].tolist() == ids[b, :n].tolist()
        rec.reset()
        o1 = model.distilbert(input_ids=e1["input_ids"])
        single = dict(rec.acts)
        single["hook_pos_embed"] = single["hook_pos_embed"].expand(1, n, D_MODEL)
        single["ln_final.hook_normalized"] = o1.last_hidden_state.float()
        for k, v in acts.items():
            worst = max(worst, close(v[b, :n], single[k][0], 1e-5, f"single {k} row {b}"))
    rec.remove()

    tensors = {"input_ids": ids.long(), "attention_mask": mask.long()}
    for k in names:
        tensors[k] = acts[k]
    return tensors, worst


@torch.no_grad()
def run_bertmodel(model: BertModel, tok, texts=SENTENCES, atol=1e-5):
    """Like run_bert, for a plain BertModel (token_type_ids left to HF's default: all 0).
    Also used by scripts/make_minilm_reference.py."""
    enc = tok(texts, padding=True, return_tensors="pt", return_attention_mask=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    B, T = ids.shape
    D = model.config.hidden_size
    L = model.config.num_hidden_layers
    rec = bertmodel_recorder(model)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    acts = rec.acts
    acts["hook_pos_embed"] = acts["hook_pos_embed"].expand(B, T, D)
    acts["ln_final.hook_normalized"] = out.last_hidden_state.float().clone()
    names = hook_names(L)
    assert sorted(acts) == sorted(names), sorted(set(acts) ^ set(names))

    hs = out.hidden_states
    assert len(hs) == L + 1
    for i in range(L):
        p = f"blocks.{i}."
        close(hs[i], acts[p + "hook_resid_pre"], 0, f"hidden_states[{i}]")
        close(hs[i + 1], acts[p + "hook_resid_post"], 0, f"hidden_states[{i + 1}]")
        close(acts[p + "mlp.hook_post"], gelu_erf(acts[p + "mlp.hook_pre"]), atol, "gelu(erf)")
        blk = model.encoder.layer[i]
        close(acts[p + "hook_resid_mid"], ln(blk.attention.output.LayerNorm, acts[p + "hook_attn_out"] + acts[p + "hook_resid_pre"]), atol, "attn ln")
        close(acts[p + "hook_resid_post"], ln(blk.output.LayerNorm, acts[p + "hook_mlp_out"] + acts[p + "hook_resid_mid"]), atol, "out ln")
        if i + 1 < L:
            close(acts[p + "hook_resid_post"], acts[f"blocks.{i + 1}.hook_resid_pre"], 0, "post->pre")
    emb = model.embeddings
    assert emb.token_type_embeddings.weight.shape[0] >= 1
    type0 = emb.token_type_embeddings.weight[0]
    close(acts["blocks.0.hook_resid_pre"], ln(emb.LayerNorm, acts["hook_embed"] + type0 + acts["hook_pos_embed"]), atol, "emb ln (word + type 0 + pos)")
    close(acts["ln_final.hook_normalized"], acts[f"blocks.{L - 1}.hook_resid_post"], 0, "ln_final")

    lens = mask.sum(1)
    worst = 0.0
    for b, s in enumerate(texts):
        n = int(lens[b])
        e1 = tok(s, return_tensors="pt")
        assert e1["input_ids"][0].tolist() == ids[b, :n].tolist()
        rec.reset()
        o1 = model(input_ids=e1["input_ids"])
        single = dict(rec.acts)
        single["hook_pos_embed"] = single["hook_pos_embed"].expand(1, n, D)
        single["ln_final.hook_normalized"] = o1.last_hidden_state.float()
        for k, v in acts.items():
            worst = max(worst, close(v[b, :n], single[k][0], atol, f"single {k} row {b}"))
    rec.remove()

    tensors = {"input_ids": ids.long(), "attention_mask": mask.long()}
    for k in names:
        tensors[k] = acts[k]
    return tensors, worst


def metadata(model_name, pad_id, tok):
    return {
        "generator": SCRIPT,
        "model": model_name,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "safetensors_version": safetensors.__version__,
        "padding_side": "right",
        "pad_token_id": str(pad_id),
        "pad_token": str(tok.pad_token),
        "sentences": "reference/sentences.json",
        "note": PAD_NOTE,
    }


def save_ref(tensors, path: Path, meta):
    out = {k: v.contiguous() for k, v in tensors.items()}
    for k, v in out.items():
        if k in ("input_ids", "attention_mask"):
            assert v.dtype == torch.int64
        else:
            assert v.dtype == torch.float32, k
    write_safetensors(out, path, meta)
    # round-trip through the safetensors library
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == meta
        assert sorted(f.keys()) == sorted(out)
        for k in f.keys():
            assert torch.equal(f.get_tensor(k), out[k]), k


def write_safetensors(tensors, path: Path, meta):
    """Write a .safetensors file with a byte-stable header (sorted keys).
    safetensors.save_file serialises __metadata__ from a Rust HashMap, whose
    order changes from run to run."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, off = {"__metadata__": dict(sorted(meta.items()))}, [], 0
    for k in sorted(tensors):
        t = tensors[k]
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------


def write_readme(info):
    text = f"""# Test fixtures

Generated by `python3 {SCRIPT}` (run from the repo root; offline, deterministic).
CI never regenerates them; rerun the script only when the fixtures must change.

- `tiny-gpt2/`: random-weight `GPT2LMHeadModel` (3 layers, d_model 32, 4 heads,
  d_mlp 128, n_ctx 64, gelu_new) + ByteLevel-BPE `tokenizer.json`
  (vocab {info['gpt2_vocab']}, `<|endoftext|>` = {info['gpt2_eot']}).
- `tiny-distilbert/`: random-weight `DistilBertForMaskedLM` (3 layers, dim 32,
  4 heads, hidden_dim 128, 64 positions, erf gelu) + lowercase WordPiece
  `tokenizer.json` (vocab {info['bert_vocab']}, [PAD] = {info['bert_pad']}).
- `tiny-bert/`: random-weight plain `BertModel` (3 layers, hidden 32, 4 heads,
  intermediate {D_MLP_BERT}, 64 positions, {TYPE_VOCAB} token types, erf gelu, with the pooler) saved
  without a key prefix (`embeddings.*`, `encoder.layer.*`, `pooler.*`), + the
  same WordPiece `tokenizer.json` as tiny-distilbert.
- `reference/sentences.json`: the {len(SENTENCES)} input texts.
- `reference/tiny-gpt2.safetensors`, `reference/tiny-distilbert.safetensors`,
  `reference/tiny-bert.safetensors`:
  `input_ids`, `attention_mask` (i64 [B,T], right-padded batch) and f32 activations
  named by TransformerLens hook names (`hook_embed`, `blocks.{{i}}.hook_resid_pre`,
  ..., `ln_final.hook_normalized`; GPT-2 also `logits` [B,T,V] and `token_ce`
  [B,T]). Padded positions hold whatever HF computed there: compare real tokens only.

Padding: GPT-2 rows are padded with `<|endoftext|>` (id {info['gpt2_eot']}; the saved
tokenizer_config has no pad token, the script sets pad = eos), DistilBERT and BERT rows
with `[PAD]` (id {info['bert_pad']}). GPT-2 gets no BOS; (Distil)BERT gets `[CLS] ... [SEP]`.
BERT ran with token_type_ids all 0 (HF default): its embedding LayerNorm input is
`hook_embed + token_type_embeddings[0] + hook_pos_embed` (the type embedding has no hook).
LayerNorm eps: GPT-2 1e-5, (Distil)BERT 1e-12. HF ran with eager attention, f32, CPU.

Weights are deliberately large (Linear N(0,{LINEAR_STD}^2), embeddings N(0,{EMBED_STD}^2),
biases and LayerNorm params perturbed by N(0,{BIAS_STD}^2)) so a dropped or
transposed tensor is obvious.

Versions: torch {torch.__version__}, transformers {transformers.__version__},
tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}.
"""
    (FIX / "README.md").write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(MODELS),
                    help=f"comma-separated subset of {MODELS} to rebuild (default: all)")
    only = [m for m in ap.parse_args().only.split(",") if m]
    bad = sorted(set(only) - set(MODELS))
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {MODELS}")
    everything = set(only) == set(MODELS)

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    FIX.mkdir(parents=True, exist_ok=True)
    if everything and REF_DIR.exists():
        shutil.rmtree(REF_DIR)
    REF_DIR.mkdir(parents=True, exist_ok=True)
    all_texts = CORPUS + SENTENCES
    refs, worsts = {}, {}

    # ---- GPT-2 ----
    raw = train_gpt2_tokenizer()
    eot = raw.token_to_id(ENDOFTEXT)
    gtok = GPT2TokenizerFast(tokenizer_object=raw, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT)
    V = len(gtok)
    if "tiny-gpt2" in only:
        cfg = GPT2Config(
            vocab_size=V,
            n_positions=N_POS,
            n_embd=D_MODEL,
            n_layer=N_LAYER,
            n_head=N_HEAD,
            activation_function="gelu_new",
            bos_token_id=eot,
            eos_token_id=eot,
        )
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(cfg).eval()
        reinit(model, SEED + 1)
        assert model.lm_head.weight is model.transformer.wte.weight
        save_model(model, gtok, GPT2_DIR)
        gtok = check_tokenizer(GPT2_DIR, all_texts)
        gtok.pad_token = gtok.eos_token
        gtok.padding_side = "right"
        g = GPT2LMHeadModel.from_pretrained(str(GPT2_DIR), attn_implementation="eager", dtype=torch.float32).eval()
        for (k, a), (k2, b) in zip(model.state_dict().items(), g.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        gt, worsts["tiny-gpt2"] = run_gpt2(g, gtok)
        save_ref(gt, REF_DIR / "tiny-gpt2.safetensors", metadata("tiny-gpt2", gtok.pad_token_id, gtok))
        refs["tiny-gpt2"] = gt

    # ---- DistilBERT ----
    raw = train_bert_tokenizer()
    VB = len(DistilBertTokenizerFast(tokenizer_object=raw))
    pad = raw.token_to_id("[PAD]")
    if "tiny-distilbert" in only:
        btok = DistilBertTokenizerFast(tokenizer_object=raw)
        bcfg = DistilBertConfig(
            vocab_size=VB,
            max_position_embeddings=N_POS,
            dim=D_MODEL,
            n_layers=N_LAYER,
            n_heads=N_HEAD,
            hidden_dim=D_MLP,
            activation="gelu",
            pad_token_id=pad,
            sinusoidal_pos_embds=False,
        )
        torch.manual_seed(SEED + 2)
        bmodel = DistilBertForMaskedLM(bcfg).eval()
        reinit(bmodel, SEED + 3)
        assert bmodel.vocab_projector.weight is bmodel.distilbert.embeddings.word_embeddings.weight
        save_model(bmodel, btok, BERT_DIR)
        btok = check_tokenizer(BERT_DIR, all_texts)
        btok.padding_side = "right"
        assert btok.pad_token_id == pad
        bm = DistilBertForMaskedLM.from_pretrained(str(BERT_DIR), attn_implementation="eager", dtype=torch.float32).eval()
        for (k, a), (k2, b) in zip(bmodel.state_dict().items(), bm.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        bt, worsts["tiny-distilbert"] = run_bert(bm, btok)
        save_ref(bt, REF_DIR / "tiny-distilbert.safetensors", metadata("tiny-distilbert", pad, btok))
        refs["tiny-distilbert"] = bt

    # ---- BERT (plain BertModel, same tokenizer as DistilBERT) ----
    if "tiny-bert" in only:
        ttok = BertTokenizerFast(tokenizer_object=raw)
        assert len(ttok) == VB
        tcfg = BertConfig(
            vocab_size=VB,
            hidden_size=D_MODEL,
            num_hidden_layers=N_LAYER,
            num_attention_heads=N_HEAD,
            intermediate_size=D_MLP_BERT,
            hidden_act="gelu",
            max_position_embeddings=N_POS,
            type_vocab_size=TYPE_VOCAB,
            layer_norm_eps=1e-12,
            pad_token_id=pad,
        )
        torch.manual_seed(SEED + 4)
        tmodel = BertModel(tcfg, add_pooling_layer=True).eval()
        reinit(tmodel, SEED + 5)
        save_model(tmodel, ttok, BERTM_DIR)
        with safe_open(str(BERTM_DIR / "model.safetensors"), framework="pt") as f:
            keys = list(f.keys())
        assert all(k.split(".")[0] in ("embeddings", "encoder", "pooler") for k in keys), keys
        assert any(k.startswith("pooler.") for k in keys) and "embeddings.position_ids" not in keys
        ttok = check_tokenizer(BERTM_DIR, all_texts)
        ttok.padding_side = "right"
        assert ttok.pad_token_id == pad
        tm = BertModel.from_pretrained(str(BERTM_DIR), attn_implementation="eager", dtype=torch.float32).eval()
        for (k, a), (k2, b) in zip(tmodel.state_dict().items(), tm.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        tt, worsts["tiny-bert"] = run_bertmodel(tm, ttok)
        meta = dict(metadata("tiny-bert", pad, ttok), token_type_ids="all 0 (HF default; not stored)")
        save_ref(tt, REF_DIR / "tiny-bert.safetensors", meta)
        refs["tiny-bert"] = tt

    (REF_DIR / "sentences.json").write_text(json.dumps(SENTENCES, ensure_ascii=False, indent=2) + "\n")
    write_readme({"gpt2_vocab": V, "gpt2_eot": eot, "bert_vocab": VB, "bert_pad": pad})

    # ---- summary ----
    print(f"torch {torch.__version__}  transformers {transformers.__version__}  tokenizers {tokenizers.__version__}")
    print(f"rebuilt: {only}")
    print(f"gpt2 vocab {V}, <|endoftext|>={eot} (pad); wordpiece vocab {VB}, [PAD]={pad} "
          f"[CLS]={raw.token_to_id('[CLS]')} [SEP]={raw.token_to_id('[SEP]')}")
    for name, t in refs.items():
        m = t["attention_mask"].bool()
        print(f"{name}: max padded-vs-single diff (abs, or rel where |x|>1) {worsts[name]:.2e}; "
              f"tokens per sentence {t['attention_mask'].sum(1).tolist()}")
        for k, v in t.items():
            print(f"  {k:32s} {str(v.dtype):14s} {list(v.shape)}")
        for i in range(N_LAYER):
            pre = t[f"blocks.{i}.mlp.hook_pre"][m]
            post = t[f"blocks.{i}.mlp.hook_post"][m]
            print(f"  layer {i}: mlp.hook_pre std {pre.std():.3f} mean|x| {pre.abs().mean():.3f} "
                  f"frac<0 {(pre < 0).float().mean():.2f}; mlp.hook_post mean|x| {post.abs().mean():.3f}")
    if "tiny-gpt2" in refs:
        gt = refs["tiny-gpt2"]
        m = gt["attention_mask"].bool()
        print(f"  gpt2 mean token_ce (nats, scored positions) {gt['token_ce'].sum() / (m.sum() - m.shape[0]):.3f}; "
              f"uniform would be {math.log(V):.3f}")
    total = sum(f.stat().st_size for f in FIX.rglob("*") if f.is_file())
    print(f"fixtures total {total / 1e6:.2f} MB")
    for f in sorted(FIX.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(ROOT)}  {f.stat().st_size}")


if __name__ == "__main__":
    sys.exit(main())
