// Type declarations of auditq/middleware (middleware.js).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Producer, AuditqError, JsonValue } from './index';

export interface AuditOptions {
  /** event action (default 'http.request'; the interceptor: 'Controller.handler') */
  action?: string;
  tenantId?(req: IncomingMessage): string | undefined;
  actorId?(req: IncomingMessage): string | undefined;
  metadata?(req: IncomingMessage, res: ServerResponse): { [key: string]: JsonValue };
  /** a send that failed; default: one logfmt line on stderr */
  onError?(err: AuditqError): void;
}

/** Express/Connect middleware: one event per request, sent when the response
 *  closes (an aborted one with outcome 'failure', metadata.aborted true). */
export function expressAudit(producer: Producer, opts?: AuditOptions):
  (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** NestJS interceptor (NestInterceptor shape): one event per handled call. */
export class AuditInterceptor {
  constructor(producer: Producer, opts?: AuditOptions);
  intercept(context: any, next: { handle(): any }): any;
}

export function outcomeOf(status: number): 'success' | 'failure' | 'denied';
