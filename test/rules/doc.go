// Package rules holds the tests that make the build enforce what the
// packages' doc.go files say in prose: which way imports point, what each
// package must not import, that every docs/ file the code names exists.
//
// It must not be imported.
package rules
