// Cross-entropy options on the CPU: the shared suite (cross_entropy_options.suite.ts), which
// cross_entropy_options_cuda.test.ts runs on the CUDA backend too. (Sequences, once CPU-only, have
// their own suite: sequences.test.ts, and sequences_cuda.test.ts on CUDA.)
import { optionsSuite } from './cross_entropy_options.suite';

optionsSuite('CPU');
