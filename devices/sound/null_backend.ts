/**
 * `--backend null`: playback is consumed and discarded, capture returns
 * silence, both at the stream's real rate (a timer paces them).
 *
 * @module
 */

import type { AudioBackend, HostEnvironment, HostStream, StreamPort } from "./backend.ts";
import { ClockedStream } from "./clocked_stream.ts";
import { DEFAULT_CAPABILITIES, type StreamCapabilities } from "./pcm.ts";

/** The null back-end. */
export class NullBackend implements AudioBackend {
  readonly name = "null";

  capabilities(): StreamCapabilities {
    return DEFAULT_CAPABILITIES;
  }

  openStream(port: StreamPort, environment: HostEnvironment): HostStream {
    return new ClockedStream(port, environment, {});
  }

  close(): void {}
}
