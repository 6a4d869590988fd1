-- Customers of the pay-with-the-phone app, their cards (acquirer tokens only) and their
-- signed-in sessions (only a hash of the cookie's token).

-- create_customer --
-- A customer. $1 public_id, $2 email, $3 password hash, $4 name. Nothing if the email is taken.
INSERT INTO customers (public_id, email, password_hash, name) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING id, public_id, email, name, created_at;

-- customer_by_email --
-- A customer and its password hash, by email $1 in any case.
SELECT id, public_id, email, name, created_at, password_hash
FROM customers WHERE lower(email) = lower($1);

-- set_password --
-- Customer $1's password hash is now $2 (a rehash with newer parameters, or a reset).
UPDATE customers SET password_hash = $2 WHERE id = $1;

-- add_card --
-- Customer $1's card, as the acquirer named it: $2 token, $3 brand, $4 last four digits.
INSERT INTO customer_cards (customer_id, token, brand, last4) VALUES ($1, $2, $3, $4)
RETURNING id, token, brand, last4, created_at;

-- cards --
-- Customer $1's cards, newest first.
SELECT id, token, brand, last4, created_at FROM customer_cards
WHERE customer_id = $1 AND deleted_at IS NULL
ORDER BY id DESC;

-- start_session --
-- Customer $1 signed in: $2 token hash, $3 CSRF token, $4 seconds it lasts.
INSERT INTO customer_sessions (customer_id, token_hash, csrf, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4));

-- session_customer --
-- The customer behind cookie token hash $1 while the session lasts, with its CSRF token.
SELECT c.id, c.public_id, c.email, c.name, c.created_at, s.csrf
FROM customer_sessions s JOIN customers c ON c.id = s.customer_id
WHERE s.token_hash = $1 AND s.expires_at > now();

-- end_session --
-- Sign out: the session of token hash $1 stops working now (and the long expired ones go).
DELETE FROM customer_sessions WHERE token_hash = $1 OR expires_at < now() - interval '1 day';
