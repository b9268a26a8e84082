/**
 * Opening the image files: each becomes the parameters of one LUN and an
 * open fd. Every problem is one line naming the image (upstream panics).
 *
 * @module
 */

import { close, fileSize, openFile, SyscallError } from "../../ffi/mod.ts";
import { type DiskParameters, imageIdentity } from "./disk_parameters.ts";

/** An open image. */
export interface OpenImage {
  /** The fd: O_RDONLY for a read-only image, else O_RDWR. */
  readonly fd: number;
  /** What the guest is told about it. */
  readonly disk: DiskParameters;
}

/** Why an image cannot be served. */
export class ImageError extends Error {
  /** Describes the problem with `path`. */
  constructor(path: string, problem: string) {
    super(`image ${path}: ${problem}`);
    this.name = "ImageError";
  }
}

/**
 * Opens `path` as a disk of `blockSize`-byte blocks. Throws {@link ImageError}
 * if it is missing, not a regular file, unreadable (or unwritable without
 * `readOnly`), empty, or not a whole number of blocks.
 */
export function openImage(
  path: string,
  options: { blockSize: number; readOnly: boolean; solidState: boolean },
): OpenImage {
  let info: Deno.FileInfo;
  let realPath: string;
  try {
    info = Deno.statSync(path);
    realPath = Deno.realPathSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ImageError(path, "no such file");
    throw new ImageError(path, error instanceof Error ? error.message : String(error));
  }
  if (!info.isFile) throw new ImageError(path, "not a regular file");
  let fd: number;
  try {
    fd = openFile(path, { readOnly: options.readOnly });
  } catch (error) {
    if (error instanceof SyscallError) {
      throw new ImageError(
        path,
        `cannot open ${options.readOnly ? "read-only" : "read-write"}: ${error.message}`,
      );
    }
    throw error;
  }
  const size = fileSize(fd);
  if (size === 0 || size % options.blockSize !== 0) {
    close(fd);
    throw new ImageError(
      path,
      `${size} bytes is not a whole, non-zero number of ${options.blockSize}-byte blocks`,
    );
  }
  const { serial, naa } = imageIdentity(realPath);
  return {
    fd,
    disk: {
      blockSize: options.blockSize,
      blocks: size / options.blockSize,
      readOnly: options.readOnly,
      solidState: options.solidState,
      serial,
      naa,
    },
  };
}
