"""The model's way out and back in: download, import, upload to the console's layout, a
car's tar.gz (models, console), and DeepRacer on AWS (droa, droa_client, droa_import), on an
S3 client that runs.s3access gives. It may import the core, drfc, hosts and runs."""
