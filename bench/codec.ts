/**
 * `npm run bench:codec`: the two hot decoders, fed in realistic 64 KiB chunks.
 * Figures go in notes, never in tests.
 */
import { benchWireCodec } from './wire_codec';
import { benchRespCodec } from './resp_codec';

benchWireCodec();
benchRespCodec();
