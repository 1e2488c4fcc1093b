// Types of transflow.js, the browser client shipped with the transflow Python package.
// Guide: docs/browser.md.

export declare const DEFAULT_PARALLEL: number;
export declare const DEFAULT_RETRIES: number;
export declare const SIGN_BATCH: number;
export declare const URL_MARGIN_MS: number;
export declare const MAX_PARTS: number;

/** Every failure the client reports: `code` is the server's error class (or an S3 code,
 * "HTTP{status}", "aborted", "paused"), `status` the HTTP status (0: no answer). */
export declare class TransflowError extends Error {
  constructor(message: string, options?: { code?: string; status?: number; retryable?: boolean; cause?: unknown });
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;
}

/** `abort()` ("aborted": nothing resumes) or `pause()` ("paused": upload() again resumes). */
export declare class UploadStoppedError extends TransflowError {
  readonly code: "aborted" | "paused";
}

/** Some files failed after their retries; the others are in S3. upload() again resumes. */
export declare class UploadFailedError extends TransflowError {
  readonly failures: { name: string; index: number; error: Error }[];
}

// -- tickets (what create_upload's ticket.to_dict() holds) -------------------------------------

export interface PostTarget {
  method?: "post";
  name: string;
  key: string;
  url: string;
  fields: Record<string, string>;
  contentType?: string | null;
  maxSize?: number;
}

export interface MultipartTarget {
  method: "multipart";
  name: string;
  key: string;
  multipartUploadId: string;
  partSize: number;
  partCount: number;
  size: number;
  contentType?: string | null;
}

export interface UploadTicket {
  uploadId: string;
  bucket: string;
  branch: string;
  prefix: string;
  templateId: string;
  expiresAt: string;
  files: (PostTarget | MultipartTarget)[];
  streamToken?: string;
  streamTokenExpiresAt?: string;
}

// -- upload -------------------------------------------------------------------------------

export interface FileProgress {
  name: string;
  size: number;
  /** Bytes S3 confirmed (a part with its ETag, a POST with its 2xx), each part once. */
  acknowledged: number;
  /** acknowledged plus what is on its way now; falls back when a part is sent again. */
  loaded: number;
  method?: "post" | "multipart";
  done: boolean;
}

export interface UploadProgress {
  files: FileProgress[];
  acknowledged: number;
  loaded: number;
  total: number;
  /** Every byte put on the wire, retries and re-sends included. */
  sent: number;
  /** Bytes S3 already had when this page resumed the upload. */
  resumed: number;
  resumedUpload: boolean;
}

export interface UploadResult extends Omit<UploadProgress, "files"> {
  ticket: UploadTicket;
  uploadId: string;
  files: { name: string; key: string; size: number; method: "post" | "multipart" }[];
}

/** A Storage-like object (localStorage by default; null: no resume after a refresh). */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface UploadOptions {
  /** The host's create-upload endpoint: POST {...body, files: [{name, type, size}]} → ticket. */
  ticketUrl: string;
  /** The base of the host's multipart endpoints ({base}/sign-parts, list-parts, complete, abort). */
  multipartUrl?: string;
  /** More members of the create-upload request, for example { templateId: "..." }. */
  body?: Record<string, unknown>;
  /** Headers of the host's own requests (the ticket endpoint and the multipart endpoints). */
  headers?: Record<string, string>;
  /** Transfers at once, across all files (default 4). */
  parallel?: number;
  /** Retries of a failed part, POST or endpoint call (default 5), with jittered backoff. */
  retries?: number;
  retryBase?: number;
  /** Part URLs per sign-parts call (default 4, at most 10). */
  signBatch?: number;
  onProgress?: (progress: UploadProgress) => void;
  /** The ticket, as soon as it is there: start follow() here, so no event is missed. */
  onTicket?: (ticket: UploadTicket, info: { resumed: boolean }) => void;
  storage?: KeyValueStorage | null;
  fetch?: typeof fetch;
  XMLHttpRequest?: typeof XMLHttpRequest;
  sleep?: (ms: number) => Promise<void>;
}

export interface UploadTask {
  readonly ticket: Promise<UploadTicket>;
  readonly done: Promise<UploadResult>;
  /** Stops sending and aborts the multipart uploads on S3; nothing of it can resume. */
  abort(): Promise<void>;
  /** Stops sending and keeps what S3 has: upload() with the same files resumes. */
  pause(): void;
  snapshot(): UploadProgress;
}

export declare function upload(files: ArrayLike<File> | Iterable<File>, options: UploadOptions): UploadTask;

// -- follow -------------------------------------------------------------------------------

interface EventBase {
  channel: string;
  uploadId: string;
  branch: string;
  timestamp: string;
  seq?: number;
  step?: string;
  message?: string;
  templateId?: string;
  /** W3C trace context of the job or step that sent the event (docs/operations.md). */
  traceparent?: string;
  [extra: string]: unknown;
}

export type ProgressEvent =
  | (EventBase & { type: "start" })
  | (EventBase & { type: "step:start" | "step:done"; step: string })
  | (EventBase & { type: "progress"; percent?: number })
  | (EventBase & { type: "output"; key: string; name?: string; bucket?: string })
  | (EventBase & { type: "done" })
  | (EventBase & { type: "error"; retrying?: boolean })
  | (EventBase & { type: "cancelled" });

export type EventKind =
  | "snapshot" | "start" | "step" | "progress" | "output" | "done" | "error" | "retrying" | "cancelled" | "*";

export interface StepStatus {
  name: string;
  state: "running" | "done" | "error" | string;
  percent?: number | null;
}

export interface OutputSeen {
  key: string;
  name?: string;
  bucket?: string;
  step?: string;
}

export interface UploadStatus {
  state: "queued" | "processing" | "retrying" | "completed" | "error" | "cancelled";
  percent: number;
  steps: StepStatus[];
  outputs: OutputSeen[];
  error?: string;
  lastEventId?: string;
  lastSeq?: number;
  [more: string]: unknown;
}

export interface FollowOptions {
  /** The SSE endpoint (default "events", relative to the page). */
  url?: string;
  /** The branch of an upload id given alone (default "main"). */
  branch?: string;
  /** Resume after this event; by default the last one this page saw of the channel. */
  lastEventId?: string;
  onStatus?: (status: UploadStatus, cause: ProgressEvent | UploadStatus) => void;
  onError?: (error: TransflowError) => void;
  /** Reconnects after the browser gave up on the stream (default 8), then `done` rejects. */
  maxReconnects?: number;
  storage?: KeyValueStorage | null;
  EventSource?: typeof EventSource;
  /** Asks the stream URL for its status once the browser gave up (a 401, a 503...). */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

export interface Following {
  readonly channel: string;
  readonly url: string;
  readonly status: UploadStatus;
  readonly lastEventId?: string;
  /** Resolves with the end state (completed, error or cancelled); rejects when the server
   * refuses the stream (a bad or expired token: code "StreamRefused") or after
   * `maxReconnects` failed reconnects ("StreamClosed"). */
  readonly done: Promise<UploadStatus>;
  on(kind: EventKind, fn: (event: ProgressEvent | UploadStatus, status: UploadStatus) => void): Following;
  close(): void;
}

/** Follow an upload: a ticket, a channel ("upload:{branch}:{uploadId}") or an upload id. */
export declare function follow(
  target: string | Pick<UploadTicket, "uploadId" | "branch" | "streamToken">,
  token?: string | null,
  options?: FollowOptions,
): Following;

// -- the pure parts, exported for tests and custom clients ---------------------------------------

export declare function formatBytes(bytes: number): string;
export declare function planParts(
  size: number,
  partSize: number,
  partCount?: number,
): { partNumber: number; start: number; end: number }[];
export declare function isRetryable(status: number): boolean;
export declare function backoffDelay(
  attempt: number,
  options?: { base?: number; cap?: number; random?: () => number },
): number;
export declare function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options?: {
    retries?: number;
    base?: number;
    cap?: number;
    random?: () => number;
    sleep?: (ms: number) => Promise<void>;
    stopped?: () => Error | null;
    onRetry?: (error: TransflowError, attempt: number) => void;
  },
): Promise<T>;
export declare class ByteProgress {
  constructor(sizes: number[]);
  sent: number;
  resumed: number;
  sending(file: number, part: number, bytes: number): void;
  acknowledge(file: number, part: number, bytes: number, options?: { resumed?: boolean }): boolean;
  failed(file: number, part: number): void;
  file(index: number): { size: number; acknowledged: number; loaded: number };
  totals(): { acknowledged: number; loaded: number; total: number; sent: number; resumed: number };
}
export declare function resumeKey(files: { name: string; size: number; lastModified?: number }[]): string;
export declare class ResumeStore {
  constructor(storage: KeyValueStorage | null, key: string);
  load(now?: number): unknown;
  clear(): void;
}
export declare class PartUrls {
  constructor(
    sign: (partNumbers: number[]) => Promise<{ parts: { partNumber: number; url: string }[]; expiresAt: string }>,
    options?: { batch?: number; now?: () => number },
  );
  calls: number;
  get(partNumber: number, upcoming?: number[]): Promise<string>;
  forget(partNumber: number): void;
}
export declare function parseEvent(data: string): ProgressEvent | null;
export declare function eventKind(event: ProgressEvent): EventKind;
export declare function initialStatus(): UploadStatus;
export declare function applySnapshot(status: UploadStatus, snapshot: Partial<UploadStatus>): UploadStatus;
export declare function foldStatus(status: UploadStatus, event: ProgressEvent): UploadStatus;
export declare function isFinished(status: UploadStatus): boolean;
export declare function streamQuery(
  target: string | Pick<UploadTicket, "uploadId" | "branch" | "streamToken">,
  token?: string | null,
  options?: { branch?: string; lastEventId?: string },
): { channel: string; query: string };
