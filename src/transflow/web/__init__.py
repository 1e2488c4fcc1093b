"""Web: the browser client (an ES module and its TypeScript declarations) shipped with the
package, for a host to serve next to its create-upload, multipart and SSE endpoints."""
