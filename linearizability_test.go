package gormflight

import (
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"gorm.io/gorm"
)

// Linearizability (internal/testdb's suite): K registers (rows of
// gft_lin_reg) written by GORM Update, Update in a transaction and Exec,
// and read through three kinds of cached query (First, an aggregate over
// every register, a join), by workers on three instances. Each register's
// history is checked with porcupine against a sequential register, per
// cached query and across all queries; both must be linearizable. (Across
// queries this rests on writes announcing themselves before COMMIT:
// without that, a miss could read the new row while another query's older
// entry was still served, new-then-old while a write is in progress.)

type linReg struct {
	ID  int64
	Val int64
}

func (linReg) TableName() string { return "gft_lin_reg" }

// linRegs are one run's registers: rows base..base+K-1 of gft_lin_reg,
// val 0, each with a row in gft_lin_name.
type linRegs struct{ base int64 }

func linNewRegs(t testing.TB, d *testDB, db *gorm.DB) linRegs {
	t.Helper()
	d.setup(t, db, schemaLockLinearizability, testdb.LinSchema...)
	regs := linRegs{base: testdb.LinBase()}
	statements, args := testdb.LinRegisterRows(regs.base)
	for i, s := range statements {
		if err := db.Exec(s, args[i]...).Error; err != nil {
			t.Fatal(err)
		}
	}
	return regs
}

func (r linRegs) id(k int) int64 { return r.base + int64(k) }

// client returns the registers' LinClient on in, writing through writer
// (nil: in itself).
func (r linRegs) client(in *instance, writer *gorm.DB) testdb.LinClient {
	if writer == nil {
		writer = in.db
	}
	return testdb.LinClient{
		First: func(k int) (int64, error) {
			var reg linReg
			err := in.db.Scopes(Cache(time.Minute)).First(&reg, r.id(k)).Error
			return reg.Val, err
		},
		All: func() ([]int64, error) {
			var regs []linReg
			err := in.db.Scopes(Cache(time.Minute)).
				Raw("SELECT id, val FROM gft_lin_reg WHERE id BETWEEN ? AND ? ORDER BY id", r.id(0), r.id(testdb.LinRegisters-1)).
				Scan(&regs).Error
			if err != nil {
				return nil, err
			}
			ids, vals := make([]int64, len(regs)), make([]int64, len(regs))
			for i, reg := range regs {
				ids[i], vals[i] = reg.ID, reg.Val
			}
			return testdb.LinAll(r.base, ids, vals)
		},
		Join: func(k int) (int64, error) {
			var row struct {
				Val  int64
				Name string
			}
			err := in.db.Scopes(Cache(time.Minute)).
				Raw("SELECT r.val, n.name FROM gft_lin_reg r JOIN gft_lin_name n ON n.id = r.id WHERE r.id = ?", r.id(k)).
				Scan(&row).Error
			return row.Val, err
		},
		Writes: []testdb.LinWrite{
			{Kind: "Update", Write: func(k int, v int64) error {
				return writer.Model(&linReg{}).Where("id = ?", r.id(k)).Update("val", v).Error
			}},
			{Kind: "Transaction", Write: func(k int, v int64) error {
				return writer.Transaction(func(tx *gorm.DB) error {
					return tx.Model(&linReg{}).Where("id = ?", r.id(k)).Update("val", v).Error
				})
			}},
			{Kind: "Exec", Write: func(k int, v int64) error {
				return writer.Exec("UPDATE gft_lin_reg SET val = ? WHERE id = ?", v, r.id(k)).Error
			}},
		},
		Hits: func() uint64 { return in.p.Stats().Hits },
	}
}

func TestLinearizability(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *testDB) {
		ins := d.instances(t, 3, nil)
		regs := linNewRegs(t, d, ins[0].db)
		clients := make([]testdb.LinClient, len(ins))
		for i, in := range ins {
			clients[i] = regs.client(in, nil)
		}
		testdb.LinRun(t, clients, 8, 600)
	})
}

// The checker must catch a real violation: writes made through a GORM
// handle without the plugin bump nothing, so the instances keep serving the
// register's old value after the write has returned.
func TestLinearizabilityCheckerCatchesMissingInvalidation(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *testDB) {
		testdb.LinControl(t, func(t *testing.T, plainWrites bool) []testdb.LinClient {
			ins := d.instances(t, 2, nil)
			regs := linNewRegs(t, d, ins[0].db)
			var writer *gorm.DB
			if plainWrites {
				writer = d.open(t) // no plugin: its writes bump nothing
			}
			return []testdb.LinClient{regs.client(ins[0], writer), regs.client(ins[1], writer)}
		})
	})
}
