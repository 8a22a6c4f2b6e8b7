// Generates the peer golden files in this folder with independent encoders from the npm registry.
// Rerun (needs node >= 18 and network access to the npm registry):
//   mkdir -p /tmp/tokpeer && cd /tmp/tokpeer && npm init -y && \
//     npm install tiktoken@1.0.22 @huggingface/tokenizers@0.2.0 gpt-3-encoder@1.1.4
//   TOKPEER_DIR=/tmp/tokpeer node tests/MoeCompiler.Tokenizers.Tests/TestData/peer/generate_goldens.mjs
// then /usr/bin/python3 .../generate_sentencepiece_goldens.py for the tokenizer.model goldens.
// Tests only read the committed .jsonl outputs; they never run this script.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../../..");
const data = path.join(repo, "src/MoeCompiler.Tokenizers/Data");
const peerDir = process.env.TOKPEER_DIR ?? "/tmp/tokpeer";
const require = createRequire(path.join(peerDir, "package.json"));
const { Tiktoken } = require("tiktoken");
const gpt3 = require("gpt-3-encoder");
const { Tokenizer } = await import(pathToFileURL(path.join(peerDir, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")));

const QWEN_PATTERN = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

// ---- peer encoders: (text) => ids, with special-token strings in the text recognised ----
function tiktokenEncoder(file, specials) {
  const enc = new Tiktoken(fs.readFileSync(path.join(data, file), "utf8"), specials, QWEN_PATTERN);
  // Qwen's and Arcade100k's tokenizers apply NFC before tiktoken.
  return (text) => Array.from(enc.encode(text.normalize("NFC"), "all"));
}
const qwenSpecials = { "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645 };
for (let i = 0; i < 205; i++) qwenSpecials[`<|extra_${i}|>`] = 151646 + i;
const arcadeNames = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
  "<gh_stars>", "<filename>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
  "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>", "<commit_msg>",
  "<commit_after>", "<reponame>", "<|endofprompt|>", "<|im_start|>", "<|im_end|>", "<|pause|>",
  "<|reg0|>", "<|reg1|>", "<|reg2|>", "<|reg3|>", "<|reg4|>", "<|reg5|>", "<|reg6|>", "<|reg7|>", "<|extra0|>"];
const arcadeSpecials = Object.fromEntries(arcadeNames.map((n, i) => [n, 100257 + i]));

function hfEncoder(json, addSpecialTokens) {
  const tok = new Tokenizer(json, {});
  return (text) => Array.from(tok.encode(text, { add_special_tokens: addSpecialTokens }).ids).map(Number);
}
const phi2Json = JSON.parse(fs.readFileSync(path.join(data, "phi2-tokenizer.json"), "utf8"));
const mistralJson = JSON.parse(fs.readFileSync(path.join(data, "mistral-tokenizer.json"), "utf8"));
const openchatJson = JSON.parse(fs.readFileSync(path.join(data, "mistral-tokenizer.json"), "utf8"));
for (const [content, id] of [["<|end_of_turn|>", 32000], ["<|pad_0|>", 32001]])
  openchatJson.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

const peers = {
  qwen: { encode: tiktokenEncoder("qwen.tiktoken", qwenSpecials), peer: "npm tiktoken (Qwen regex, NFC)", bos: null },
  arcade100k: { encode: tiktokenEncoder("cl100k_base.tiktoken", arcadeSpecials), peer: "npm tiktoken (cl100k ranks, Qwen regex, NFC)", bos: null },
  phi2: { encode: hfEncoder(phi2Json, false), peer: "npm @huggingface/tokenizers (phi2-tokenizer.json)", bos: null },
  gpt2: { encode: (t) => gpt3.encode(t), peer: "npm gpt-3-encoder", bos: null, noSpecials: true },
  sentencepiece: { encode: hfEncoder(mistralJson, false), peer: "npm @huggingface/tokenizers (mistral-tokenizer.json)", bos: 1 },
  openchat: { encode: hfEncoder(openchatJson, false), peer: "npm @huggingface/tokenizers (mistral-tokenizer.json + OpenChat tokens)", bos: 1 },
};

// ---- texts: the HF vector strings, hand-picked edge cases, and seeded random Unicode ----
const vectorText = fs.readFileSync(path.join(here, "../vectors/strings.inp"), "utf8").split("\n__ggml_vocab_test__\n").slice(0, -1);
const edgeCases = [
  "", " ", "\n", "\r\n", " \r\n \n\n  x", "a\u3000b\u00a0c", "e\u0301 caf\u00e9 A\u030a", "\u1e9b\u0323",
  "I'm 'S 'RE 'Ll 'VE 'D 'T it's", "\u2019s don\u2019t", "12345 \u0663\u0664\u0665 \u2167 \u00bd",
  "\ud835\udc00\ud835\udc01 \ud840\udc00\ud840\udc01", "\ud83e\udd99\ud83e\udd99 llama", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002",
  "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "tabs\t\t\tand    spaces     ",
  "<|endoftext|>hello<|im_start|>user\n<|im_end|>", "<s>[INST] hi [/INST] yo </s><unk>", "<|end_of_turn|>GPT4 Correct",
  "x<|endoftext|>", "  <|endoftext|>  ", "<|endoftext", "<image>\n", "!!!??? ...\n\n\n", "foo.bar(baz) { return 0; }",
];
function mulberry32(seed) {
  return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
// Code-point pools. Left out on purpose: U+0085 and U+FEFF (JavaScript's \s disagrees with Unicode White_Space
// on them, so JS-regex peers are not a reference there), unassigned and very recent code points.
const pools = [
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n\r", "'", "sStTmMdDrRlLvVe",
  "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~", "\u00e9\u00fc\u00f1\u00e7\u00df\u00c5\u00e6\u00f8", "\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437",
  "\u4e00\u4e8c\u4e09\u56db\u4f60\u597d\u4e16\u754c\u7684\u662f", "\u3042\u3044\u3046\u30a2\u30a4", "\ud55c\uad6d\uc5b4", "\u0627\u0644\u0639",
  "\u0301\u0308\u0323", "\u3000\u00a0\u2003", "\u0663\u2167\u00bd", "\ud83e\udd99\ud83d\ude00\ud83c\udf0d\u2705\u2764\ufe0f",
  "\ud835\udc00\ud840\udc00", "\u2581",
];
const rand = mulberry32(20261122);
const randomTexts = [];
for (let i = 0; i < 120; i++) {
  let s = "";
  const len = 1 + Math.floor(rand() * 40);
  for (let j = 0; j < len; j++) {
    const pool = Array.from(pools[Math.floor(rand() * pools.length)]);
    s += pool[Math.floor(rand() * pool.length)];
  }
  randomTexts.push(s);
}
const texts = [...vectorText, ...edgeCases, ...randomTexts];

function writeJsonl(file, rows) {
  fs.writeFileSync(path.join(here, file), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  console.log(`${file}: ${rows.length} rows`);
}

for (const [kind, p] of Object.entries(peers)) {
  const rows = [];
  for (const text of texts) {
    if (p.noSpecials && text.includes("<|endoftext|>")) continue;
    rows.push({ text, ids: p.encode(text) });
  }
  writeJsonl(`encode-${kind}.jsonl`, rows);
}

// ---- prompt templates: a port of the reference Conversation.get_prompt (MoE-LLaVA / CuMo) ----
const SYSTEM = "A chat between a curious user and an artificial intelligence assistant. " +
  "The assistant gives helpful, detailed, and polite answers to the user's questions.";
const templates = {
  phi: { style: "TWO", system: SYSTEM, sep: " ", sep2: "<|endoftext|>", tokenizer: "phi2" },
  stablelm: { style: "TWO", system: SYSTEM, sep: " ", sep2: "<|endoftext|>", tokenizer: "arcade100k" },
  qwen: { style: "TWO", system: SYSTEM, sep: " ", sep2: "<|endoftext|>", tokenizer: "qwen" },
  openchat: { style: "TWO", system: SYSTEM, sep: " ", sep2: "<|end_of_turn|>", tokenizer: "openchat" },
  plain: { style: "PLAIN", system: "", sep: "\n", sep2: "\n", tokenizer: "phi2" },
  mistral_instruct_system: { style: "LLAMA_2", system: SYSTEM, sep: "", sep2: "</s>", tokenizer: "sentencepiece" },
  // LLaVA's conv_mistral_instruct (Mistral/Mixtral-Instruct's format): LLAMA_2 with an empty system, which has no
  // system prompt to override.
  mistral_instruct: { style: "LLAMA_2", system: "", sep: "", sep2: "</s>", tokenizer: "sentencepiece", noSystem: true },
};
function getPrompt(t, system, messages) {
  if (t.style === "TWO") {
    const seps = [t.sep, t.sep2];
    let ret = system + seps[0];
    messages.forEach(([role, msg], i) => { ret += msg ? `${role}: ${msg}${seps[i % 2]}` : `${role}:`; });
    return ret;
  }
  if (t.style === "PLAIN") {
    const seps = [t.sep, t.sep2];
    let ret = system;
    messages.forEach(([, msg], i) => { if (msg) ret += msg + seps[i % 2]; });
    return ret;
  }
  // LLAMA_2 as in CuMo: "<s>" before the first [INST] only (sep is ""), then lstrip(sep) which is a no-op.
  const wrapSys = (m) => (m.length > 0 ? `<<SYS>>\n${m}\n<</SYS>>\n\n` : m);
  let ret = "";
  messages.forEach(([, msg], i) => {
    if (!msg) return;
    if (i === 0) msg = wrapSys(system) + msg;
    if (i % 2 === 0) ret += (i === 0 ? "<s>" : t.sep) + `[INST] ${msg} [/INST]`;
    else ret += " " + msg + " " + t.sep2;
  });
  return ret;
}
// tokenizer_image_token: every chunk tokenised with the tokenizer's own BOS handling, one leading BOS kept.
function tokenizeImagePrompt(p, prompt) {
  const chunks = prompt.split("<image>").map((c) => (p.bos !== null ? [p.bos, ...p.encode(c)] : p.encode(c)));
  const ids = [];
  let offset = 0;
  if (chunks.length > 0 && chunks[0].length > 0 && p.bos !== null && chunks[0][0] === p.bos) { offset = 1; ids.push(chunks[0][0]); }
  chunks.forEach((c, i) => { if (i > 0) ids.push(-200); ids.push(...c.slice(offset)); });
  return ids;
}
const conversations = [
  { history: [], question: "What is shown in this image?" },
  { history: [["Describe the image.", "A cat sits on a red sofa."]], question: "What colour is the sofa?" },
  { history: [["Wie viele Personen?", "Zwei Personen stehen dort."], ["\u8fd9\u662f\u54ea\u91cc\uff1f", "\u8fd9\u662f\u516c\u56ed\u3002"]], question: "Any animals?  Be brief.\n" },
];
const promptRows = [];
for (const [name, t] of Object.entries(templates)) {
  for (const [index, c] of conversations.entries()) {
    for (const system of [null, "You are terse."]) {
      if (system !== null && (index !== 1 || t.noSystem)) continue;
      const users = [...c.history.map((h) => h[0]), c.question];
      users[0] = "<image>\n" + users[0];
      const messages = [];
      c.history.forEach((h, i) => { messages.push(["USER", users[i]], ["ASSISTANT", h[1]]); });
      messages.push(["USER", users[users.length - 1]], ["ASSISTANT", null]);
      const prompt = getPrompt(t, system ?? t.system, messages);
      const p = peers[t.tokenizer];
      promptRows.push({ template: name, tokenizer: t.tokenizer, history: c.history, question: c.question, system,
        prompt, addBos: p.bos !== null, ids: tokenizeImagePrompt(p, prompt) });
    }
  }
}
writeJsonl("prompts.jsonl", promptRows);
fs.writeFileSync(path.join(here, "peers.json"), JSON.stringify(Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, p.peer])), null, 2) + "\n");
