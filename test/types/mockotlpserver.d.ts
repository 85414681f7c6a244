// @elastic/mockotlpserver ships JS without type declarations for its entry point.
declare module '@elastic/mockotlpserver' {
  export class MockOtlpServer {
    constructor(opts: Record<string, unknown>);
    grpcUrl: URL | null;
    httpUrl: URL | null;
    start(): Promise<void>;
    close(): Promise<void>;
  }
  export function normalizeTrace(raw: unknown): unknown;
}
