// Run a TFJS graph model on raw RGB uint8 images (HEIGHT x WIDTH x 3 bytes each) with the
// pure-JS CPU backend and print one JSON line per image:
// {"shape": [...], "values": [...], "backend": "cpu", "version": "..."}.
// Usage: node run_graph_model.js MODEL_JSON HEIGHT WIDTH IMAGE_RGB_RAW...
// The weights are read from disk by an in-process IO handler (no fetch, no native binding).
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function fileHandler(modelJsonPath) {
  return {
    load: async () => {
      const model = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of model.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelJsonPath), p)));
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        weightSpecs: specs,
        weightData,
      };
    },
  };
}

async function main() {
  const [modelJson, h, w, ...images] = process.argv.slice(2);
  const height = parseInt(h, 10);
  const width = parseInt(w, 10);
  if (!modelJson || !(height > 0) || !(width > 0) || images.length === 0) {
    process.stderr.write('usage: node run_graph_model.js MODEL_JSON HEIGHT WIDTH IMAGE_RGB_RAW...\n');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await tf.loadGraphModel(fileHandler(modelJson));
  for (const imagePath of images) {
    const raw = fs.readFileSync(imagePath);
    if (raw.length !== height * width * 3) {
      process.stderr.write(`${imagePath} has ${raw.length} bytes, expected ${height * width * 3}\n`);
      process.exit(2);
    }
    const input = tf.tensor(Int32Array.from(raw), [1, height, width, 3], 'int32');
    const out = model.execute(input);
    const values = Array.from(await out.data());
    const line = { shape: out.shape, values, backend: tf.getBackend(), version: tf.version.tfjs };
    process.stdout.write(JSON.stringify(line) + '\n');
    tf.dispose([input, out]);
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
