#!/bin/sh
# MinIO's MINIO_ROOT_USER / MINIO_ROOT_PASSWORD become SeaweedFS's S3 identity; `weed mini`
# runs master, volume, filer and S3 (port 9000) in one process, data under /data.
# Arguments are ignored (MinIO's `server /data --console-address :9001` means nothing here).
export AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER:?}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD:?}"
exec weed mini -dir=/data -ip="$(hostname -i | cut -d' ' -f1)" -ip.bind=0.0.0.0 -s3.port=9000 \
  -master.telemetry=false -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0
