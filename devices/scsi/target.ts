/**
 * The SCSI target (target 0): decodes each CDB once and routes it. REPORT
 * LUNS and REPORT SUPPORTED OPERATION CODES are answered for the target;
 * INQUIRY and REQUEST SENSE also for a LUN without a unit (SPC-4 §6.6.2,
 * §6.39: peripheral qualifier 011b, LOGICAL UNIT NOT SUPPORTED); everything
 * else goes to the logical unit.
 *
 * @module
 */

import { decodeCdb, isSense } from "./cdb.ts";
import { standardInquiry } from "./inquiry.ts";
import {
  checkCondition,
  dataIn,
  type LogicalUnit,
  type OutcomeDone,
  type RequestBuffers,
  requestSense,
} from "./logical_unit.ts";
import { reportLuns, reportSupportedOperationCodes } from "./reports.ts";
import { invalidField, Senses } from "./sense.ts";

/** Target 0 and its logical units, LUN `i` being `units[i]`. */
export class Target {
  readonly #units: readonly LogicalUnit[];
  readonly #luns: readonly number[];

  /** A target serving `units` as LUNs 0…n-1. */
  constructor(units: readonly LogicalUnit[]) {
    this.#units = units;
    this.#luns = units.map((_, i) => i);
  }

  /** The unit at `lun`, if any. */
  unit(lun: number): LogicalUnit | undefined {
    return this.#units[lun];
  }

  /** Executes `cdb` for `lun`; `done` runs once, now or when its I/O completes. */
  execute(
    lun: number,
    request: { cdb: Uint8Array; buffers: RequestBuffers },
    done: OutcomeDone,
  ): void {
    const { buffers } = request;
    const command = decodeCdb(request.cdb);
    const unit = this.#units[lun];
    if (isSense(command)) {
      // A missing unit is reported before the CDB's own faults (SPC-4 §6.6.2).
      return done(checkCondition(unit ? command : Senses.LOGICAL_UNIT_NOT_SUPPORTED));
    }
    switch (command.kind) {
      case "report-luns":
        return done(answer(reportLuns(command, this.#luns), command.allocationLength, buffers));
      case "report-supported-operation-codes":
        if (!unit) break;
        return done(
          answer(reportSupportedOperationCodes(command), command.allocationLength, buffers),
        );
      case "inquiry":
        if (unit) break;
        if (command.evpd) return done(checkCondition(invalidField(1, 0)));
        return done(dataIn(standardInquiry(null), command.allocationLength, buffers));
      case "request-sense":
        if (unit) break;
        return done(requestSense(command, buffers, Senses.LOGICAL_UNIT_NOT_SUPPORTED));
    }
    if (!unit) return done(checkCondition(Senses.LOGICAL_UNIT_NOT_SUPPORTED));
    unit.execute(command, buffers, done);
  }
}

function answer(
  data: Uint8Array | ReturnType<typeof invalidField>,
  allocationLength: number,
  buffers: RequestBuffers,
) {
  return data instanceof Uint8Array
    ? dataIn(data, allocationLength, buffers)
    : checkCondition(data);
}
