//go:build !floor_nosts

package main

import "github.com/aws/aws-sdk-go-v2/service/sts"

func init() { linked = append(linked, (*sts.Client).AssumeRoleWithWebIdentity) }

// initSTS builds an STS client as the agent does at start-up.
func initSTS() { _ = sts.New(sts.Options{Region: "us-east-1"}) }
