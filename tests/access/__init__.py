"""Who may do what: tokens, browser sessions, roles per operation on every surface."""
