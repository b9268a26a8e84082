/**
 * The SCSI target (target 0): decodes each CDB once and routes it. REPORT
 * LUNS and REPORT SUPPORTED OPERATION CODES are answered for the target;
 * INQUIRY and REQUEST SENSE also for a LUN without a unit (SPC-4 §6.6.2,
 * §6.39: peripheral qualifier 011b, LOGICAL UNIT NOT SUPPORTED); everything
 * else goes to the logical unit.
 *
 * Unit attention (SAM-5 §5.14, as scsi-hd): after a power on (a new
 * front-end) and a reset (LOGICAL UNIT RESET, I_T NEXUS RESET) each unit
 * reports POWER ON, RESET, OR BUS DEVICE RESET OCCURRED once, to the first
 * command other than INQUIRY, REPORT LUNS and REQUEST SENSE (which returns
 * it as its sense data); a CDB that does not decode is refused first.
 * Linux's disk probe retries its TEST UNIT READY past it.
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
import { invalidField, type Sense, Senses } from "./sense.ts";

/** Target 0 and its logical units, LUN `i` being `units[i]`. */
export class Target {
  readonly #units: readonly LogicalUnit[];
  readonly #luns: readonly number[];
  /** Per LUN, the unit attention condition not yet reported. */
  readonly #attention: (Sense | null)[];

  /** A target serving `units` as LUNs 0…n-1. */
  constructor(units: readonly LogicalUnit[]) {
    this.#units = units;
    this.#luns = units.map((_, i) => i);
    this.#attention = units.map(() => null);
  }

  /** A power on (a new front-end): mode parameters to defaults, and a unit attention on every unit. */
  powerOn(): void {
    for (const unit of this.#units) unit.powerOn();
    this.#attention.fill(Senses.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
  }

  /** A reset of the unit at `lun` (every unit if not given): its next command sees a unit attention. */
  reset(lun?: number): void {
    const condition = Senses.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED;
    if (lun === undefined) this.#attention.fill(condition);
    else if (lun < this.#attention.length) this.#attention[lun] = condition;
  }

  /** The unit attention condition pending for `lun`, if any. */
  pendingAttention(lun: number): Sense | null {
    return this.#attention[lun] ?? null;
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
    const attention = unit ? this.#attention[lun] : null;
    if (attention && command.kind !== "inquiry" && command.kind !== "report-luns") {
      this.#attention[lun] = null;
      if (command.kind === "request-sense") {
        return done(requestSense(command, buffers, attention));
      }
      return done(checkCondition(attention));
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
