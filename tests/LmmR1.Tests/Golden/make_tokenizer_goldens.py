"""Tokenizer goldens for edge cases the 14 fixture cases do not cover (astral letters and digits, odd whitespace,
contractions with long s, NFC-changing input, special-token neighbours), encoded with Hugging Face `tokenizers`.
Not run yet: the GPU machine that has `tokenizers` needs the Qwen tokenizer.json carried to it.
Usage: python3 make_tokenizer_goldens.py TOKENIZER_JSON OUT.jsonl [CORPUS_JSONL]
Compare with ours: `lmmr1 debug tokenize --tokenizer <dir of TOKENIZER_JSON> < OUT.jsonl` prints {"text", "ids"} lines
in the same order; compare the "ids" arrays (the JSON escaping of "text" differs between the two writers).
"""
import json, sys
from tokenizers import Tokenizer

tk = Tokenizer.from_file(sys.argv[1])
texts = [
    "𠀀𠀁 ext-B 𝑥𝑦 math letters 𝟙𝟚 digits", "don't I'M we'LL 'S 'sound ſ'ſ 'ſ", "x\u00A0y\u3000z\u2028a\u2029b\u0085c",
    "a\u001Cb\u001Dc\u001Ed\u001Ff", "mongolian\u180Eseparator zero\u200Bwidth bom\uFEFFmark", "  \n  \n x", "\r\r\n\n\r",
    "tab\t\tand\u000Bvt\u000Cff", "١٢٣ ٤ Ⅷ Ⅻ ½¾ ²³", "e\u0301 A\u030A ﬁ ﬀ Å \u212B \uF900", "emoji 😀👍🏽👨‍👩‍👧‍👦 🇫🇷",
    "<|im_start|><|im_end|>x<|im_start", "<think>\n</think>\n\n<answer>$\\boxed{1}$</answer>",
    "<|image_pad|><|image_pad|>text<|vision_end|>", "a<|endoftext|>b", ">\u0338 <|im_end|>\u0338", "    indented\n\tcode()\n",
    "!!!???...,,, ---", "日本語のテキストとカタカナ、한국어 텍스트 \u1100\u1161\u11A8", "x" * 3000, " " * 50 + "y", "\n" * 20,
    "1234567890" * 5, "The END.   ", "'", "' s", "''s",
]
if len(sys.argv) > 3:
    texts += [json.loads(line)["text"] for line in list(open(sys.argv[3], encoding="utf-8"))[:50]]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps(dict(text=t, ids=tk.encode(t, add_special_tokens=False).ids), ensure_ascii=False) + "\n")
print(f"wrote {len(texts)} cases to {sys.argv[2]}")
