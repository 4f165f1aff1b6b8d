package main

import (
	"slices"
	"testing"
)

func TestCommandArgs(t *testing.T) {
	tests := []struct{ argv, want []string }{
		{[]string{"/usr/bin/cfs-storage", "pull", "x"}, []string{"pull", "x"}},
		{[]string{"/usr/local/bin/mkcomposefs", "--from-file", "-", "-"}, []string{"mkcomposefs", "--from-file", "-", "-"}},
		{[]string{"composefs-info", "dump", "img"}, []string{"composefs-info", "dump", "img"}},
		{[]string{"cfs-storage"}, []string{}},
	}
	for _, tc := range tests {
		if got := commandArgs(tc.argv); !slices.Equal(got, tc.want) {
			t.Errorf("commandArgs(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}
