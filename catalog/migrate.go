package catalog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// The schema is versioned: migrations/<engine>/NNNNN_*.sql, applied in
// order at Open by goose, which records each applied version in its
// table (goose_db_version) in the catalog itself. A version number means
// the same change on both engines; a version one engine does not need is
// absent from its directory (SQLite's 2 is in Go: sqliteColumns).
//
//go:embed migrations
var migrations embed.FS

// migrationLock keys the PostgreSQL advisory lock under which one node
// migrates while the others starting at the same moment wait: the
// catalog's own key (ASCII "cvmigr") mixed with the schema's name, since
// advisory locks are per database and a database may hold several
// catalogs, one a schema.
func migrationLock(ctx context.Context, sdb *sql.DB) (int64, error) {
	var schema sql.NullString
	if err := sdb.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return 0, fmt.Errorf("the catalog's schema: %w", err)
	}
	if !schema.Valid {
		return 0, errors.New("the catalog's schema: no schema on the search path exists")
	}
	h := fnv.New64a()
	h.Write([]byte(schema.String))
	return 109524488906354 ^ int64(h.Sum64()), nil
}

// migrate brings the catalog's schema to the current version.
func migrate(ctx context.Context, sdb *sql.DB, d *dialect) error {
	dir, err := fs.Sub(migrations, "migrations/"+d.name)
	if err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	gooseDialect := goose.DialectSQLite3
	switch d {
	case pgDialect:
		gooseDialect = goose.DialectPostgres
		// Polled every second for up to five minutes: a node that starts
		// while another migrates waits for it, then finds nothing to do.
		id, err := migrationLock(ctx, sdb)
		if err != nil {
			return fmt.Errorf("migrate catalog: %w", err)
		}
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(id), lock.WithLockTimeout(1, 300))
		if err != nil {
			return fmt.Errorf("migrate catalog: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	case sqliteDialect:
		opts = append(opts, goose.WithGoMigrations(goose.NewGoMigration(2, &goose.GoFunc{RunTx: sqliteColumns}, nil)))
	}
	p, err := goose.NewProvider(gooseDialect, sdb, dir, opts...)
	if err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	return nil
}

// sqliteColumns is SQLite's migration 2: the nullable columns that
// catalogs made before migrations may lack, added where missing (a
// catalog made by version 1's SQL has them). Rows written before have no
// value, which their readers expect.
func sqliteColumns(ctx context.Context, tx *sql.Tx) error {
	for _, c := range []struct{ table, column, typ string }{
		{"chunks", "video_samples", "INTEGER"},
		{"checkpoints", "anchored", "INTEGER"},
	} {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.column).Scan(&n); err != nil {
			return fmt.Errorf("columns of %s: %w", c.table, err)
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.typ); err != nil {
			return fmt.Errorf("add %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}
