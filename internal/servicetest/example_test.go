package servicetest_test

import (
	"fmt"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// Tests that run against every kind of database range over Databases, and
// open one with each entry's Open.
func ExampleDatabases() {
	for _, d := range servicetest.Databases {
		fmt.Println(d.Dialect)
	}
	// Output:
	// sqlite
	// postgres
	// mysql
}
