-- 0.2.0 -> 0.3.0

-- issue 19 (operations hardening)
