// Package controllers holds apiwarden's reconcilers, one file per kind, each
// a thin edge around the pure decisions in internal/. The controllers run in
// the manager's leader-elected "controllers" role.
package controllers
