/**
 * The live JavaScript heap of another Deno process, through its V8
 * inspector (`--inspect`): a full garbage collection, then the bytes still
 * in use. Growth that survives a forced collection is a leak; growth that
 * does not is garbage V8 had not collected yet. For `bench:memory --heap`.
 *
 * @module
 */

/** Sends one inspector command and resolves with its result. */
type Send = (method: string) => Promise<Record<string, unknown>>;

/** A connection to a process's inspector. */
export class HeapProbe {
  readonly #socket: WebSocket;
  readonly #send: Send;

  private constructor(socket: WebSocket, send: Send) {
    this.#socket = socket;
    this.#send = send;
  }

  /** A free TCP port on the loopback for `--inspect=127.0.0.1:<port>`. */
  static freePort(): number {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    return port;
  }

  /** Connects to the inspector of a process started with `--inspect=127.0.0.1:<port>`. */
  static async connect(port: number, options: { timeoutMs?: number } = {}): Promise<HeapProbe> {
    const deadline = performance.now() + (options.timeoutMs ?? 20_000);
    let url: string | undefined;
    while (url === undefined) {
      try {
        const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        url = list[0]?.webSocketDebuggerUrl;
      } catch (error) {
        if (performance.now() > deadline) {
          throw new Error(`no inspector on port ${port}: ${error}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`inspector ${url} refused the connection`));
    });
    let id = 0;
    const waiting = new Map<number, (result: Record<string, unknown>) => void>();
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      waiting.get(message.id)?.(message.result ?? {});
      waiting.delete(message.id);
    };
    const send: Send = (method) =>
      new Promise((resolve) => {
        waiting.set(++id, resolve);
        socket.send(JSON.stringify({ id, method }));
      });
    return new HeapProbe(socket, send);
  }

  /** Bytes of the JavaScript heap still in use after a full garbage collection. */
  async liveBytes(): Promise<number> {
    await this.#send("HeapProfiler.collectGarbage");
    const usage = await this.#send("Runtime.getHeapUsage");
    return Number(usage.usedSize);
  }

  /** Disconnects (the process goes on). */
  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.#socket.onclose = resolve);
    this.#socket.close();
    await closed;
  }
}
