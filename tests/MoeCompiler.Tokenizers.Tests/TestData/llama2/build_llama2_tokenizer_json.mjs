// Rebuilds a Hugging Face tokenizer.json for the Llama-2 SentencePiece vocabulary from the data embedded in
// npm llama-tokenizer-js@1.2.2 (MIT; its vocabulary and merges were exported from Llama-2's own
// tokenizer.json), so that llama.cpp's llama-spm.out vectors can be checked. Then it encodes the vector
// strings with @huggingface/tokenizers on the rebuilt file and fails unless they equal llama-spm.out.
// Rerun:
//   cd /tmp/tokpeer && npm install llama-tokenizer-js@1.2.2 @huggingface/tokenizers@0.2.0
//   TOKPEER_DIR=/tmp/tokpeer node tests/MoeCompiler.Tokenizers.Tests/TestData/llama2/build_llama2_tokenizer_json.mjs
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const peerDir = process.env.TOKPEER_DIR ?? "/tmp/tokpeer";
const source = fs.readFileSync(path.join(peerDir, "node_modules/llama-tokenizer-js/llama-tokenizer.js"), "utf8");
const vocabB64 = source.match(/const llama_vocab_base64 = "([^"]+)"/)[1];
const mergesB64 = source.match(/const llama_merges_binary = "([^"]+)"/)[1];

const vocab = Buffer.from(vocabB64, "base64").toString("utf8").split("\n");
const mergeBytes = Buffer.from(mergesB64, "base64");
const merges = [];
for (let i = 0; i + 3 < mergeBytes.length; i += 4)
  merges.push(vocab[mergeBytes.readUInt16LE(i)] + " " + vocab[mergeBytes.readUInt16LE(i + 2)]);
if (vocab.length !== 32000) throw new Error(`expected 32000 tokens, got ${vocab.length}`);

const json = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
  pre_tokenizer: null,
  post_processor: null,
  decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" },
    { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
  model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, vocab: Object.fromEntries(vocab.map((t, i) => [t, i])), merges },
};
fs.writeFileSync(path.join(here, "llama2-tokenizer.json"), JSON.stringify(json));
console.log(`llama2-tokenizer.json: ${vocab.length} tokens, ${merges.length} merges`);

const { Tokenizer } = await import(pathToFileURL(path.join(peerDir, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")));
const tok = new Tokenizer(json, {});
const strings = fs.readFileSync(path.join(here, "../vectors/strings.inp"), "utf8").split("\n__ggml_vocab_test__\n").slice(0, -1);
const expected = fs.readFileSync(path.join(here, "../vectors/llama-spm.out"), "utf8").split("\n");
let bad = 0;
strings.forEach((s, i) => {
  const ids = Array.from(tok.encode(s, { add_special_tokens: false }).ids).map(Number).join(" ");
  const want = expected[i].trim().split(/\s+/).filter(Boolean).join(" ");
  if (ids !== want) { bad++; console.log(`#${i} ${JSON.stringify(s)}\n  want ${want}\n  got  ${ids}`); }
});
if (bad) { console.error(`${bad} of ${strings.length} vectors differ`); process.exit(1); }
console.log(`all ${strings.length} llama-spm.out vectors reproduced by @huggingface/tokenizers on the rebuilt file`);
