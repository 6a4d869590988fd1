// Types of the Hamster checkout SDK, v1 (hamster.js beside this file).

export type ErrorCode =
  | "invalid_publishable_key"
  | "authentication_error"
  | "secret_key_in_browser"
  | "session_expired"
  | "invalid_client_secret"
  | "mount_target_missing"
  | "not_found"
  | "failed"
  | (string & {});

/** What `error` handlers get: a code to branch on and a message fit to show. */
export interface HamsterError {
  code: ErrorCode;
  message: string;
}

/** The payment the session made, as the server committed it. */
export interface Payment {
  tid: string;
  status: "PENDING" | "PROCESSING" | "REQUIRES_ACTION" | "SUCCESS" | "FAILED" | (string & {});
  amount: number;
  currency: string;
  approvalNo: string | null;
  failureReason: string | null;
}

/** What `success` and `failure` handlers get. Amounts are integers in minor units. */
export interface Outcome {
  sessionId: string;
  result: "success" | "failure";
  /** null on success; "canceled_by_customer", "expired", "declined", "action_expired"
   * (left at Atom's page; nothing charged) or a failure reason. */
  code: string | null;
  /** null when no payment was made (canceled or expired). */
  payment: Payment | null;
  tid: string | null;
  status: string | null;
  amount: number;
  currency: string;
  approvalNo: string | null;
  failureReason: string | null;
}

export interface Change {
  /** "requires_action": the browser is being sent to the provider's page (Atom's). */
  status: "open" | "scanned" | "confirmed" | "requires_action" | (string & {});
}

export interface CheckoutOptions {
  /** The session's client secret, from your server's POST /api/checkout/sessions. */
  clientSecret: string;
  /** "auto" (default): QR on a desktop, the app's page on a phone. */
  mode?: "auto" | "qr" | "redirect";
  /** "atom": a "Pay with Atom" button; the customer pays at Atom's page and comes back. */
  method?: "atom";
}

export interface Checkout {
  on(event: "success", handler: (outcome: Outcome) => void): Checkout;
  on(event: "failure", handler: (outcome: Outcome) => void): Checkout;
  on(event: "error", handler: (error: HamsterError) => void): Checkout;
  on(event: "change", handler: (change: Change) => void): Checkout;
  /** Show the checkout in the element (or the first one the selector matches). */
  mount(target: string | Element): Checkout;
  /** Stop following the session and remove the checkout. */
  unmount(): Checkout;
}

export interface HamsterOptions {
  /** Origin of the Hamster API; default: where hamster.js was loaded from. */
  apiBase?: string;
  /** "ko…" for Korean, else English; default: the page's lang, then the browser's. */
  locale?: string;
  mode?: "auto" | "qr" | "redirect";
  /** false: on a phone, show the app button without opening the app at once. */
  deepLink?: boolean;
}

export interface HamsterInstance {
  readonly version: string;
  checkout(options: CheckoutOptions): Checkout;
}

/** Never throws: key problems reach each checkout's `error` handlers after mount. */
export declare function Hamster(publishableKey: string, options?: HamsterOptions): HamsterInstance;
export default Hamster;
