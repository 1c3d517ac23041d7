package awsfit_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/fitshake/fitshake/examples/sdk/awsfit"
	"github.com/fitshake/fitshake/tlsdial"
)

func ExampleHTTPClient() {
	// Every AWS client made from cfg dials with fitshake.
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithHTTPClient(awsfit.HTTPClient(&tlsdial.TCPDialer{})))
	if err != nil {
		log.Fatal(err)
	}
	client := s3.NewFromConfig(cfg)
	_ = client // client.ListBuckets(ctx, &s3.ListBucketsInput{}) …
}
