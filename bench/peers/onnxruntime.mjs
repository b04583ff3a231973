// onnxruntime-node peer: the ONNX `SoftmaxCrossEntropyLoss` op (opset 13, reduction 'mean',
// ignore_index −100) in a one-node model written here as protobuf bytes, so no converter is
// needed. Inputs: scores (rows, vocab) float32, labels (rows) int64. The CPU kernel takes
// float/double scores only, so bf16/f16 logits are fed dequantised to f32 (the same values).
// onnxruntime-node is an inference build: the op's gradient is not available, so this peer has
// a forward only.

// ---- a minimal protobuf writer: varints, length-delimited fields
const varint = (n) => {
  const out = [];
  let v = BigInt.asUintN(64, BigInt(n)); // negatives: 10-byte two's complement
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
};
const key = (field, wire) => varint((field << 3) | wire);
const int = (field, n) => [...key(field, 0), ...varint(n)];
const bytes = (field, data) => [...key(field, 2), ...varint(data.length), ...data];
const str = (field, s) => bytes(field, [...Buffer.from(s, 'utf8')]);
const msg = (field, ...parts) => bytes(field, parts.flat());

// TensorProto.DataType: FLOAT = 1, INT64 = 7. A dim is a symbolic name or a size.
const dim = (d) => msg(1, typeof d === 'string' ? str(2, d) : int(1, d));
const valueInfo = (field, name, elemType, dims) =>
  msg(field, str(1, name), msg(2, msg(1, int(1, elemType), msg(2, ...dims.map(dim)))));

/** ONNX model bytes: loss = SoftmaxCrossEntropyLoss(scores, labels), reduction 'mean'. */
export function softmaxCrossEntropyModel() {
  const node = msg(1, str(1, 'scores'), str(1, 'labels'), str(2, 'loss'), str(3, 'ce'), str(4, 'SoftmaxCrossEntropyLoss'),
    msg(5, str(1, 'reduction'), str(4, 'mean'), int(20, 3)),       // AttributeProto STRING
    msg(5, str(1, 'ignore_index'), int(3, -100), int(20, 2)));     // AttributeProto INT
  const graph = msg(7, node, str(2, 'cross_entropy'),
    valueInfo(11, 'scores', 1, ['rows', 'vocab']), valueInfo(11, 'labels', 7, ['rows']), valueInfo(12, 'loss', 1, []));
  return Uint8Array.from([...int(1, 8), ...str(2, 'fusedce-bench'), ...graph, ...msg(8, str(1, ''), int(2, 13))]);
}

/** Loads onnxruntime-node if installed; returns a peer or { skip: reason }. */
export async function onnxruntimePeer() {
  let ort;
  try {
    ort = await import('onnxruntime-node');
  } catch (e) {
    return { skip: `onnxruntime-node not installed or not loading (${e.code ?? e.message}); install it in your project: ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node` };
  }
  const version = ort.env?.versions?.common ?? 'unknown';
  const sessions = new Map();
  return {
    name: 'onnxruntime-node',
    version,
    /** A forward for f32 values (rows·vocab) and int targets, at the given thread count. */
    async prepare(values, targets, rows, vocab, threads) {
      if (!sessions.has(threads))
        sessions.set(threads, await ort.InferenceSession.create(softmaxCrossEntropyModel(), {
          intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
        }));
      const session = sessions.get(threads);
      const feeds = {
        scores: new ort.Tensor('float32', values, [rows, vocab]),
        labels: new ort.Tensor('int64', BigInt64Array.from(targets, (t) => BigInt(t)), [rows]),
      };
      const run = async () => (await session.run(feeds)).loss.data[0];
      return { forward: run, loss: await run() };
    },
  };
}
