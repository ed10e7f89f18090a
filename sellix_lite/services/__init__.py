"""Business rules. Services take a database (through a Scope) and never import Flask: the
API, the storefront, the dashboard, the jobs and the CLI all call the same functions."""
