-- The intake looks up a merchant's newest active endpoint in the payment's INSERT.
CREATE INDEX webhook_endpoints_mid_idx ON webhook_endpoints (mid, id DESC);
