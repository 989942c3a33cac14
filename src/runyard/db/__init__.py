"""The database layer: engine and transactions, tables, migrations, schema checks."""
