/**
 * A strict command-line tokenizer with the behaviour and error messages of
 * Node's `util.parseArgs` (`strict: true`), which the daemons used before:
 * importing `node:util` loads Deno's Node compatibility layer, about 0.45 MB
 * of private memory in every daemon (`deno task bench:memory`).
 *
 * Accepted forms: `--long value`, `--long=value`, `-s value`, `-svalue`,
 * groups of short flags (`-ab`, `-abs value`, `-absvalue`), and `--`, after
 * which everything is positional. A value option repeated keeps the last
 * value unless it is `multiple`.
 *
 * @module
 */

/** One option the tokenizer knows, by long name. */
export interface ArgOption {
  /** `string` takes a value; `boolean` does not. */
  readonly type: "string" | "boolean";
  /** Single-letter short name, if any. */
  readonly short?: string;
  /** Values collect in a list, in order. */
  readonly multiple?: boolean;
}

/** What {@link parseArgv} found. */
export interface ParsedArgv {
  /** Values by long name: a string, `true`, or a list for `multiple`. */
  readonly values: Record<string, string | boolean | string[]>;
  /** Positional arguments, in order. */
  readonly positionals: string[];
}

/** A malformed command line; the message is Node's `parseArgs` one. */
export class ArgvError extends Error {
  /** Describes the mistake. */
  constructor(message: string) {
    super(message);
    this.name = "ArgvError";
  }
}

interface Token {
  readonly name: string;
  readonly rawName: string;
  readonly value: string | undefined;
  readonly inlineValue: boolean;
}

/**
 * Parses `args` strictly against `options.options`. Throws {@link ArgvError}
 * for an unknown option, a value option without a value, a flag given a
 * value, a value that looks like an option (`--path --help`), or a
 * positional argument when `allowPositionals` is not set.
 */
export function parseArgv(
  args: readonly string[],
  options: { options: Readonly<Record<string, ArgOption>>; allowPositionals?: boolean },
): ParsedArgv {
  const known = options.options;
  const allowPositionals = options.allowPositionals ?? false;
  const typeOf = (name: string) => Object.hasOwn(known, name) ? known[name].type : undefined;
  const longFor = (short: string) =>
    Object.keys(known).find((name) => known[name].short === short) ?? short;
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  const positional = (value: string) => {
    if (!allowPositionals) {
      throw new ArgvError(
        `Unexpected argument '${value}'. This command does not take positional arguments`,
      );
    }
    positionals.push(value);
  };
  const option = (token: Token) => {
    check(token, known, allowPositionals);
    const spec = known[token.name];
    const value = spec.type === "string" ? token.value as string : true;
    if (spec.multiple) {
      const list = values[token.name];
      if (Array.isArray(list)) list.push(value as string);
      else values[token.name] = [value as string];
    } else {
      values[token.name] = value;
    }
  };
  const rest = [...args];
  while (rest.length > 0) {
    const arg = rest.shift() as string;
    if (arg === "--") {
      rest.splice(0).forEach(positional);
    } else if (arg.length === 2 && arg[0] === "-" && arg[1] !== "-") {
      const name = longFor(arg[1]);
      const takes = typeOf(name) === "string" && rest.length > 0;
      option({ name, rawName: arg, value: takes ? rest.shift() : undefined, inlineValue: false });
    } else if (arg.length > 2 && arg[0] === "-" && arg[1] !== "-") {
      if (typeOf(longFor(arg[1])) === "string") {
        // `-svalue`: the rest of the argument is the value.
        option({
          name: longFor(arg[1]),
          rawName: `-${arg[1]}`,
          value: arg.slice(2),
          inlineValue: true,
        });
      } else {
        // A group of short flags: `-abs value` or `-absvalue` (a value option ends it).
        const expanded: string[] = [];
        for (let i = 1; i < arg.length; i++) {
          if (typeOf(longFor(arg[i])) !== "string" || i === arg.length - 1) {
            expanded.push(`-${arg[i]}`);
          } else {
            expanded.push(`-${arg.slice(i)}`);
            break;
          }
        }
        rest.unshift(...expanded);
      }
    } else if (arg.length > 2 && arg.startsWith("--")) {
      const equals = arg.indexOf("=", 3);
      if (equals === -1) {
        const name = arg.slice(2);
        const takes = typeOf(name) === "string" && rest.length > 0;
        option({ name, rawName: arg, value: takes ? rest.shift() : undefined, inlineValue: false });
      } else {
        const name = arg.slice(2, equals);
        option({ name, rawName: `--${name}`, value: arg.slice(equals + 1), inlineValue: true });
      }
    } else {
      positional(arg);
    }
  }
  return { values, positionals };
}

function check(
  token: Token,
  known: Readonly<Record<string, ArgOption>>,
  allowPositionals: boolean,
): void {
  if (!Object.hasOwn(known, token.name)) {
    throw new ArgvError(
      `Unknown option '${token.rawName}'` +
        (allowPositionals
          ? `. To specify a positional argument starting with a '-', place it at the end of the command after '--', as in '-- ${
            JSON.stringify(token.rawName)
          }`
          : ""),
    );
  }
  const { short, type } = known[token.name];
  const names = `${short ? `-${short}, ` : ""}--${token.name}`;
  if (type === "string" && token.value === undefined) {
    throw new ArgvError(`Option '${names} <value>' argument missing`);
  }
  if (type === "boolean" && token.value !== undefined) {
    throw new ArgvError(`Option '${names}' does not take an argument`);
  }
  if (
    !token.inlineValue && token.value !== undefined && token.value.length > 1 &&
    token.value[0] === "-"
  ) {
    const example = token.rawName.startsWith("--")
      ? `'${token.rawName}=-XYZ'`
      : `'--${token.name}=-XYZ' or '${token.rawName}-XYZ'`;
    throw new ArgvError(
      `Option '${token.rawName}' argument is ambiguous.\n` +
        `Did you forget to specify the option argument for '${token.rawName}'?\n` +
        `To specify an option argument starting with a dash use ${example}.`,
    );
  }
}
