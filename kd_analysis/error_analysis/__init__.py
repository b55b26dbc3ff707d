"""Error analysis: where a student's answers go wrong and why (`.records` written at evaluation, `.frames`,
`.matrix`, `.significance`, `.filters`, `.slices`, `.notes`, `.workspace` for the run store, `.backfill`,
`.explain`, `.joins`, `.report`)."""
