// TensorFlow.js peers (cpu and wasm backends). tf.losses.softmaxCrossEntropy has no sparse-label
// form: labels are fed as a dense one-hot (rows, vocab) f32 tensor built once, outside the timed
// region (ignored rows get an all-zero label row, so they add 0, but 'mean' still divides by
// every row: the bench uses no ignored rows). Logits are f32 (tfjs has no bf16): bf16/f16 data
// is fed dequantised, the same values. fwd+bwd is tf.valueAndGrad over the logits.

/** Loads TensorFlow.js with the given backend if installed; returns a peer or { skip: reason }. */
export async function tfjsPeer(backendName) {
  let tf;
  // tfjs prints an advert for its native backend when loaded and on first use; the table says
  // which backend ran
  const { log, warn } = console;
  console.log = console.warn = () => {};
  try {
    tf = await import('@tensorflow/tfjs'); // core, the cpu backend and the gradients
    if (backendName === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend(backendName))) throw new Error(`backend ${backendName} did not initialise`);
    await tf.ready();
    tf.enableProdMode(); // no debug checks, and no advert on the first tensor write
  } catch (e) {
    return { skip: `TensorFlow.js (${backendName}) not installed or not loading (${e.code ?? e.message}); install it in your project: npm install @tensorflow/tfjs${backendName === 'wasm' ? ' @tensorflow/tfjs-backend-wasm' : ''}` };
  } finally {
    Object.assign(console, { log, warn });
  }
  const ce = (onehot, z) => tf.losses.softmaxCrossEntropy(onehot, z, undefined, 0, tf.Reduction.MEAN);
  return {
    name: `tfjs-${backendName}`,
    version: tf.version?.['tfjs-core'] ?? 'unknown',
    async prepare(values, targets, rows, vocab) {
      await tf.setBackend(backendName);
      const z = tf.tensor2d(values, [rows, vocab], 'float32');
      const onehot = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), vocab), 'float32'));
      const valueAndGrad = tf.valueAndGrad((x) => ce(onehot, x));
      const forward = () => tf.tidy(() => ce(onehot, z).dataSync()[0]);
      const fwdBwd = () => {
        const r = tf.tidy(() => {
          const { value, grad } = valueAndGrad(z);
          grad.dataSync(); // materialise the gradient
          return value.dataSync()[0];
        });
        return r;
      };
      return { forward, fwdBwd, loss: forward(), dispose: () => tf.dispose([z, onehot]) };
    },
  };
}
