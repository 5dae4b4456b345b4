#!/usr/bin/env python3
"""DeepRacer on AWS (DRoA) standing in for a user's installation, as DRfC's scripts/droa/*.py
(2eb1a1f) meet it: one HTTPS server (DROA_PORT on 127.0.0.1, the test CA's certificate
/certs/droa.crt) answering for every part of it. Run as `python3 droa.py` in the stand-in image
(moto is there). Each behaviour follows a file of aws-solutions/deepracer-on-aws (4abc675):

- the site: `/env.js` is `window.EnvironmentConfig = {...};` with apiEndpointUrl, userPoolId,
  userPoolClientId, identityPoolId, region and uploadBucketName
  (infra/lib/constructs/website/website.ts); any other path answers 200 with index.html, as
  its CloudFront turns 403 and 404 into the app's page;
- Cognito's user pool (moto's cognito-idp): a client allowing USER_PASSWORD_AUTH, users
  invited with a temporary password (FORCE_CHANGE_PASSWORD until they set theirs on the
  site) or confirmed, each in the group dr-racers (infra/lib/constructs/auth/userIdentity.ts);
- the identity pool (here, not moto, whose GetId and GetCredentialsForIdentity take any
  token): authenticated identities only, the login key
  `cognito-idp.<region>.amazonaws.com/<userPoolId>` with an ID token this pool issued and
  that has not expired; the role is chosen by the token's cognito:groups with ambiguous
  resolution Deny, so a user in no group gets no credentials; an hour's keys per call;
- the API (`/api`, API Gateway with IAM auth): every request SigV4-signed for execute-api in
  the region by keys the identity pool gave, else 403 as API Gateway answers. GET /models
  (paginated by `token`), GET /models/{id}, DELETE /models/{id} (READY or ERROR only),
  GET /models/{id}/getasset and POST /importmodel (libs/model/src/main/smithy/operations/*,
  libs/lambda/src/api/handlers/{importModel,deleteModel,getAssetUrl}.ts); the import reads
  training_params.yaml, model_metadata.json, reward_function.py and ip/hyperparameters.json
  under s3Path (import-workflow/utils/ImportHelper.ts), refuses a name or track DRoA would,
  and finishes in the background (IMPORTING, then READY, or ERROR with importErrorMessage);
- S3 (moto): the upload bucket, writable with the identity pool's keys; the model bucket,
  readable only through the presigned URLs getasset hands out.
"""

import base64
import datetime
import gzip
import io
import json
import os
import re
import secrets
import tarfile
import threading
import time
import urllib.parse
import uuid

REGION = os.environ.get("DROA_REGION", "us-east-1")
PORT = int(os.environ["DROA_PORT"])
BASE = f"https://127.0.0.1:{PORT}"
UPLOAD_BUCKET = "droa-upload-bucket"
MODEL_BUCKET = "droa-model-storage"
SERVICE_KEY, SERVICE_SECRET = "AKIADROASERVICE", secrets.token_hex(20)  # its lambdas' role
PAGE = 3  # models per page of GET /models: small, so that a client must follow `token`
# libs/config/src/data/tracks.json: the trackIds DRoA knows
TRACKS = {
    "2024_reinvent_champ",
    "2022_april_open",
    "2022_april_pro",
    "2022_august_open",
    "2022_august_pro",
    "2022_july_open",
    "2022_july_pro",
    "2022_june_open",
    "2022_june_pro",
    "2022_march_open",
    "2022_march_pro",
    "2022_may_open",
    "2022_may_pro",
    "2022_october_open",
    "2022_october_pro",
    "2022_reinvent_champ",
    "2022_september_open",
    "2022_september_pro",
    "2022_summit_speedway",
    "Albert",
    "AmericasGeneratedInclStart",
    "Aragon",
    "arctic_open",
    "arctic_pro",
    "Austin",
    "Belille",
    "Bowtie_track",
    "caecer_gp",
    "caecer_loop",
    "Canada_Training",
    "China_track",
    "dubai_open",
    "dubai_pro",
    "FS_June2020",
    "hamption_open",
    "hamption_pro",
    "July_2020",
    "jyllandsringen_open",
    "jyllandsringen_pro",
    "LGSWide",
    "Mexico_track",
    "Monaco",
    "Monaco_building",
    "morgan_open",
    "morgan_pro",
    "New_York_Track",
    "Oval_track",
    "penbay_open",
    "penbay_pro",
    "red_star_open",
    "red_star_pro",
    "reInvent2019_track",
    "reInvent2019_wide",
    "reinvent_base",
    "Singapore",
    "Singapore_building",
    "Spain_track",
    "thunder_hill_open",
    "thunder_hill_pro",
    "Tokyo_Training_track",
    "Vegas_track",
    "Virtual_May19_Train_track",
}
INDEX_HTML = b"<!doctype html><html><body><div id=root></div></body></html>"

state = {"models": {}, "issued": {}, "identities": {}, "lock": threading.Lock()}


def log(*args):
    print("[droa]", *args, flush=True)


def answer(start_response, code, body, ctype="application/json", extra=()):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Error"}
    start_response(
        f"{code} {reasons.get(code, 'Error')}",
        [("Content-Type", ctype), ("Content-Length", str(len(data))), *extra],
    )
    return [data]


def read_body(environ):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    return body


# --- signatures -------------------------------------------------------------------------


def sigv4_problem(environ, body, service, secrets_by_key):
    """None when the request is signed (SigV4, Authorization header) for `service` in REGION
    by a key of secrets_by_key, with its session token; else API Gateway's message. The
    signature is recomputed by botocore from the headers the client signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "Missing Authentication Token"
    fields = dict(f.strip().split("=", 1) for f in auth[17:].split(","))
    key_id, _date, region, svc, _ = fields["Credential"].split("/")
    if svc != service or region != REGION:
        return f"Credential should be scoped to a valid region and service ({REGION}/{service})"
    known = secrets_by_key.get(key_id)
    if known is None:
        return "The security token included in the request is invalid."
    secret, token = known
    if token and environ.get("HTTP_X_AMZ_SECURITY_TOKEN") != token:
        return "The security token included in the request is invalid."
    headers = {}
    for name in fields["SignedHeaders"].split(";"):
        key = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}.get(
            name, "HTTP_" + name.upper().replace("-", "_")
        )
        headers[name] = environ.get(key, "")
    query = environ.get("QUERY_STRING", "")
    url = f"https://{environ.get('HTTP_HOST')}{environ.get('PATH_INFO', '')}"
    request = AWSRequest(
        method=environ["REQUEST_METHOD"], url=url + (f"?{query}" if query else ""), data=body
    )
    for k, v in headers.items():
        request.headers[k] = v
    signer = SigV4Auth(Credentials(key_id, secret, token), service, REGION)
    stamp = environ.get("HTTP_X_AMZ_DATE", "")
    request.context["timestamp"] = stamp
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != fields["Signature"]:
        return (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 300:
        return "Signature expired"
    return None


def live_keys():
    now = time.time()
    with state["lock"]:
        return {
            k: (v["secret"], v["token"]) for k, v in state["issued"].items() if v["expires"] > now
        }


# --- the identity pool ------------------------------------------------------------------


def identity_pool(environ, body, start_response, ids):
    from moto.cognitoidp.models import cognitoidp_backends

    target = environ.get("HTTP_X_AMZ_TARGET", "").split(".", 1)[1]
    req = json.loads(body or b"{}")

    def error(code, message):
        return answer(
            start_response,
            400,
            {"__type": code, "message": message},
            ctype="application/x-amz-json-1.1",
        )

    if target == "GetId" and req.get("IdentityPoolId") != ids["identityPoolId"]:
        return error("ResourceNotFoundException", "IdentityPool not found")
    logins = req.get("Logins") or {}
    login = f"cognito-idp.{REGION}.amazonaws.com/{ids['userPoolId']}"
    if not logins:
        return error("NotAuthorizedException", "Unauthenticated access is not supported.")
    if set(logins) != {login}:
        return error("NotAuthorizedException", "Invalid login token. Not a valid provider.")
    token = logins[login]
    pool = cognitoidp_backends["123456789012"][REGION].user_pools[ids["userPoolId"]]
    try:
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    except Exception:
        claims = {}
    if token not in pool.id_tokens or claims.get("token_use") != "id":
        return error("NotAuthorizedException", "Invalid login token.")
    if claims.get("exp", 0) < time.time():
        return error("NotAuthorizedException", "Invalid login token. Token expired.")
    identity = state["identities"].setdefault(claims["sub"], f"{REGION}:{uuid.uuid4()}")
    if target == "GetId":
        return answer(start_response, 200, {"IdentityId": identity})
    if target != "GetCredentialsForIdentity":
        return error("InvalidParameterException", f"{target} is not served here")
    if req.get("IdentityId") != identity:
        return error("NotAuthorizedException", "Invalid login token. Logins don't match.")
    if "dr-racers" not in claims.get("cognito:groups", []):
        return error(
            "InvalidIdentityPoolConfigurationException",
            "No role matched the rules of the identity pool (ambiguous role resolution: Deny)",
        )
    key, secret, session = "ASIA" + secrets.token_hex(8).upper(), secrets.token_hex(20), None
    session = secrets.token_urlsafe(48)
    expires = time.time() + 3600
    with state["lock"]:
        state["issued"][key] = {
            "secret": secret,
            "token": session,
            "expires": expires,
            "profile": claims["sub"],
        }
    creds = {"AccessKeyId": key, "SecretKey": secret, "SessionToken": session}
    creds["Expiration"] = expires
    return answer(start_response, 200, {"IdentityId": identity, "Credentials": creds})


# --- the API ----------------------------------------------------------------------------


def presigned(key, filename=None, seconds=900):
    """s3Helper.getPresignedUrl: SigV4 query signing, as the JS SDK v3 signs."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=BASE,
        region_name=REGION,
        config=Config(signature_version="s3v4"),
        aws_access_key_id=SERVICE_KEY,
        aws_secret_access_key=SERVICE_SECRET,
    )
    params = {"Bucket": MODEL_BUCKET, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    return s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)


def own_s3():
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=BASE,
        region_name=REGION,
        aws_access_key_id=SERVICE_KEY,
        aws_secret_access_key=SERVICE_SECRET,
        verify=False,
    )


def public(model):
    out = {k: v for k, v in model.items() if not k.startswith("_")}
    # the training's metrics location, whether or not the import found a file to put there
    metrics = model.get("_metrics") or model["_root"] + "metrics/training/training.json"
    out["trainingMetricsUrl"] = presigned(metrics)
    return out


def bad(start_response, message, code=400, kind="BadRequestError"):
    return answer(start_response, code, {"message": message}, extra=[("x-amzn-errortype", kind)])


def api(environ, body, start_response):
    path = environ.get("PATH_INFO", "")[len("/api") :].rstrip("/")
    method = environ["REQUEST_METHOD"]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    problem = sigv4_problem(environ, body, "execute-api", live_keys())
    if problem:
        return answer(start_response, 403, {"message": problem})
    key_id = environ["HTTP_AUTHORIZATION"].split("Credential=", 1)[1].split("/", 1)[0]
    profile = live_keys_profile(key_id)
    mine = {m: v for m, v in state["models"].items() if v["_profile"] == profile}
    m = re.fullmatch(r"/models/([A-Za-z0-9]+)(/getasset)?", path)
    if path == "/models" and method == "GET":
        ordered = sorted(mine.values(), key=lambda v: v["createdAt"])
        start = int(query.get("token", ["0"])[0] or 0)
        page = {"models": [public(v) for v in ordered[start : start + PAGE]]}
        if start + PAGE < len(ordered):
            page["token"] = str(start + PAGE)
        return answer(start_response, 200, page)
    if path == "/importmodel" and method == "POST":
        return import_model(json.loads(body or b"{}"), profile, start_response)
    if not m:
        return bad(start_response, "Not Found", 404, "NotFoundError")
    model = mine.get(m.group(1))
    if model is None:
        return bad(start_response, "Model not found.", 404, "NotFoundError")
    if m.group(2) and method == "GET":
        return get_asset(model, query, start_response)
    if method == "GET":
        return answer(start_response, 200, {"model": public(model)})
    if method == "DELETE":
        if model["status"] not in ("READY", "ERROR"):
            return bad(
                start_response, "This resource cannot be deleted at this time. Try again later."
            )
        model["status"] = "DELETING"
        threading.Timer(2.0, lambda: state["models"].pop(model["modelId"], None)).start()
        return answer(start_response, 200, {})
    return bad(start_response, "Not Found", 404, "NotFoundError")


def live_keys_profile(key_id):
    with state["lock"]:
        return state["issued"][key_id]["profile"]


def import_model(req, profile, start_response):
    import yaml

    name, desc = req.get("modelName"), req.get("modelDescription")
    bucket, path = req.get("s3Bucket"), req.get("s3Path")
    if not name or not bucket or not path:
        return bad(start_response, "Missing required fields")
    if not re.fullmatch(r"[a-zA-Z0-9-]+", name) or len(name) > 64:
        return bad(
            start_response,
            "Model name must contain only alphanumeric characters and hyphens; and must be less "
            "than or equal to 64 characters in length",
        )
    if desc and (not re.fullmatch(r"[a-zA-Z0-9- ]+", desc) or len(desc) > 255):
        return bad(
            start_response,
            "Model description must contain only alphanumeric characters, spaces, and hyphen; "
            "and must be less than or equal to 255 characters in length",
        )
    s3 = own_s3()

    def text(key):
        try:
            return s3.get_object(Bucket=bucket, Key=f"{path}/{key}")["Body"].read().decode()
        except Exception:
            return None

    files = {
        k: text(k)
        for k in (
            "training_params.yaml",
            "model_metadata.json",
            "reward_function.py",
            "ip/hyperparameters.json",
        )
    }
    if None in files.values():  # ImportHelper throws a plain Error: the lambda's 500
        missing = [k for k, v in files.items() if v is None]
        log("import: not found under", path, missing)
        return answer(start_response, 500, {"message": "Internal Server Error"})
    params = yaml.safe_load(files["training_params.yaml"]) or {}
    meta = json.loads(files["model_metadata.json"])
    hyper = json.loads(files["ip/hyperparameters.json"])
    track = params.get("WORLD_NAME")
    if track not in TRACKS:
        return bad(start_response, f"Invalid track ID: {track}")
    if meta.get("training_algorithm") == "sac" and meta.get("action_space_type") == "discrete":
        return bad(start_response, "Agent algorithm SAC does not work with discrete action space.")
    if meta.get("training_algorithm") == "sac" and hyper.get("num_episodes_between_training") != 1:
        return bad(
            start_response,
            "Invalid hyperparameter number of episodes between training for SAC agent algorithm.",
        )
    model_id = secrets.token_hex(8)[:15]
    space = meta.get("action_space")
    if isinstance(space, list):
        action = {
            "discrete": [{"speed": a["speed"], "steeringAngle": a["steering_angle"]} for a in space]
        }
    else:
        action = {
            "continous": {
                "lowSpeed": space["speed"]["low"],
                "highSpeed": space["speed"]["high"],
                "lowSteeringAngle": space["steering_angle"]["low"],
                "highSteeringAngle": space["steering_angle"]["high"],
            }
        }
    color = str(params.get("CAR_COLOR", "WHITE")).upper()
    clockwise = params.get("TRACK_DIRECTION_CLOCKWISE") is True
    model = {
        "modelId": model_id,
        "name": name,
        "description": desc,
        "createdAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "fileSizeInBytes": 0,
        "status": "IMPORTING",
        "trainingStatus": "COMPLETED",
        "carCustomization": {"carColor": color, "carShell": "DEEPRACER"},
        "trainingConfig": {
            "trackConfig": {
                "trackId": track,
                "trackDirection": "CLOCKWISE" if clockwise else "COUNTER_CLOCKWISE",
            },
            "maxTimeInMinutes": 0,
            "raceType": "OBJECT_AVOIDANCE"
            if params.get("RACE_TYPE") == "OBJECT_AVOIDANCE"
            else "TIME_TRIAL",
        },
        "metadata": {
            "agentAlgorithm": "SAC" if meta.get("training_algorithm") == "sac" else "PPO",
            "rewardFunction": "",
            "hyperparameters": hyper,
            "actionSpace": action,
            "sensors": sensors(meta.get("sensor", [])),
        },
        "_profile": profile,
        "_root": f"{profile}/models/{model_id}/",
    }
    state["models"][model_id] = model
    threading.Thread(
        target=import_assets, args=(model, bucket, path, files["reward_function.py"]), daemon=True
    ).start()
    return answer(start_response, 200, {"modelId": model_id})


def sensors(names):
    """ImportHelper.importSensors: the camera and lidar of model_metadata.json's `sensor`."""
    out = {}
    for n in names:
        if n in ("FRONT_FACING_CAMERA", "LEFT_CAMERA", "STEREO_CAMERAS", "OBSERVATION_CAMERA"):
            out["camera"] = n
        elif n in ("LIDAR", "SECTOR_LIDAR", "DISCRETIZED_SECTOR_LIDAR"):
            out["lidar"] = n
    return out


def import_assets(model, bucket, path, reward):
    """importModelAssets: the files copied under the model's root (model_metadata.json and
    reward_function.py at its top, the rest under sagemaker-artifacts/), the reward function
    checked, then READY or ERROR."""
    time.sleep(1.0)
    s3 = own_s3()
    size = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=path + "/")
        for page in pages:
            for o in page.get("Contents", []):
                rel = o["Key"][len(path) + 1 :]
                top = rel in ("model_metadata.json", "reward_function.py")
                dest = model["_root"] + (rel if top else f"sagemaker-artifacts/{rel}")
                s3.copy_object(
                    Bucket=MODEL_BUCKET, Key=dest, CopySource={"Bucket": bucket, "Key": o["Key"]}
                )
                # ImportHelper.parseMetrics/copyMetricsFile: metrics/training/training-*.json
                name = rel.rsplit("/", 1)[-1]
                if (
                    rel.startswith("metrics/training/")
                    and "training-" in name
                    and name.endswith(".json")
                ):
                    model["_metrics"] = model["_root"] + f"metrics/training/{name}"
                    s3.copy_object(
                        Bucket=MODEL_BUCKET,
                        Key=model["_metrics"],
                        CopySource={"Bucket": bucket, "Key": o["Key"]},
                    )
                size += o["Size"]
        compile(reward, "reward_function.py", "exec")
        if not re.search(r"^def reward_function\(", reward, re.M):
            raise SyntaxError("no function reward_function(params)")
    except SyntaxError as e:
        model.update(status="ERROR", importErrorMessage=f"Reward function validation failed: {e}")
        return
    model["metadata"]["rewardFunction"] = reward
    model.update(status="READY", fileSizeInBytes=size)


def get_asset(model, query, start_response):
    kind = (query.get("assetType") or [""])[0]
    if kind not in (
        "VIRTUAL_MODEL",
        "TRAINING_LOGS",
        "EVALUATION_LOGS",
        "PHYSICAL_CAR_MODEL",
        "VIDEOS",
    ):
        return bad(start_response, f"Invalid assetType: {kind}")
    if kind == "EVALUATION_LOGS":
        if not query.get("evaluationId"):
            return bad(start_response, "evaluationId is required for evaluation logs.")
        return bad(start_response, "Evaluation not found.", 404, "NotFoundError")
    if kind == "PHYSICAL_CAR_MODEL":
        return bad(start_response, "Unable to find physical model artifact.", 404, "NotFoundError")
    if kind == "VIDEOS":
        return bad(start_response, "This asset type is not supported.")
    s3 = own_s3()
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=MODEL_BUCKET, Prefix=model["_root"]
        )
        for o in page.get("Contents", [])
    ]
    if kind == "TRAINING_LOGS":
        # the job's own log locations only: for an imported model, the metrics file the
        # import copied (getLogsArchiveAssetUrl); none, and there is nothing to archive
        logs = [k for k in keys if k == model.get("_metrics")]
        if not logs:
            return bad(start_response, "No log files found.", 404, "NotFoundError")
        archive = model["_root"] + "logs/training-logs.tar.gz"
        s3.put_object(Bucket=MODEL_BUCKET, Key=archive, Body=tar_of(s3, model, logs))
        return answer(start_response, 200, {"url": presigned(archive)})
    # VIRTUAL_MODEL: the first ask queues the packaging; asked again once it is done, a URL
    if model.get("_packaged"):
        name = f"virtualmodel-{model['name']}.tar.gz"
        return answer(start_response, 200, {"url": presigned(model["_packaged"], name)})
    if not model.get("_packaging"):
        model["_packaging"] = True

        def package():
            time.sleep(2.0)
            art = [k for k in keys if "/sagemaker-artifacts/" in k or k.endswith(".json")]
            key = model["_root"] + "virtualmodel.tar.gz"
            s3.put_object(Bucket=MODEL_BUCKET, Key=key, Body=tar_of(s3, model, art))
            model["_packaged"] = key

        threading.Thread(target=package, daemon=True).start()
    return answer(start_response, 200, {"status": "QUEUED"})


def tar_of(s3, model, keys):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k in keys:
            body = s3.get_object(Bucket=MODEL_BUCKET, Key=k)["Body"].read()
            info = tarfile.TarInfo(k[k.index(model["modelId"]) :])
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


# --- the server -------------------------------------------------------------------------


def main():
    import boto3
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    moto = DomainDispatcherApplication(create_backend_app)
    ids = {}

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if path == "/env.js":
            js = "window.EnvironmentConfig = " + json.dumps(ids) + ";"
            return answer(start_response, 200, js.encode(), "application/javascript")
        if path == "/api" or path.startswith("/api/"):
            return api(environ, read_body(environ), start_response)
        if target.startswith("AWSCognitoIdentityService."):
            return identity_pool(environ, read_body(environ), start_response, ids)
        if target.startswith("AWSCognitoIdentityProviderService."):
            return moto(environ, start_response)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if "/s3/" in auth or "X-Amz-Credential" in query or "AWSAccessKeyId" in query:
            return s3_gate(environ, start_response, moto, query)
        return answer(start_response, 200, INDEX_HTML, "text/html")  # CloudFront's 403/404

    server = make_server(
        "127.0.0.1",
        PORT,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=("/certs/droa.crt", "/certs/droa.key"),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    idp = boto3.client(
        "cognito-idp",
        endpoint_url=BASE,
        region_name=REGION,
        aws_access_key_id=SERVICE_KEY,
        aws_secret_access_key=SERVICE_SECRET,
        verify=False,
    )
    pool = idp.create_user_pool(PoolName="deepracer-users")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="WebClient",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.create_group(UserPoolId=pool, GroupName="dr-racers")
    for entry in os.environ.get("DROA_USERS", "").split(","):
        if not entry:
            continue
        email, password, status = entry.split(":", 2)
        idp.admin_create_user(
            UserPoolId=pool, Username=email, TemporaryPassword=password, MessageAction="SUPPRESS"
        )
        if status in ("CONFIRMED", "NOGROUP"):  # NOGROUP: confirmed, in no group
            idp.admin_set_user_password(
                UserPoolId=pool, Username=email, Password=password, Permanent=True
            )
        if status != "NOGROUP":
            idp.admin_add_user_to_group(UserPoolId=pool, Username=email, GroupName="dr-racers")
    s3 = own_s3()
    s3.create_bucket(Bucket=UPLOAD_BUCKET)
    s3.create_bucket(Bucket=MODEL_BUCKET)
    ids.update(
        apiEndpointUrl=f"{BASE}/api/",
        userPoolId=pool,
        userPoolClientId=client,
        identityPoolId=f"{REGION}:{uuid.uuid4()}",
        region=REGION,
        uploadBucketName=UPLOAD_BUCKET,
    )
    log("ready", json.dumps(ids))
    threading.Event().wait()


def s3_gate(environ, start_response, moto, query):
    """S3 as the identity pool's role and the service see it: the service's key anywhere
    (its presigned URLs too), a user's keys only for the upload bucket."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    key_id = (
        auth.split("Credential=", 1)[1].split("/", 1)[0]
        if "Credential=" in auth
        else query.get("X-Amz-Credential", query.get("AWSAccessKeyId", ["/"]))[0].split("/", 1)[0]
    )
    if key_id == SERVICE_KEY:
        found = standin_signed_by()(environ, SERVICE_KEY, SERVICE_SECRET)
        if found:
            return denied(start_response, *found)
        return moto(environ, start_response)
    keys = live_keys()
    if key_id not in keys:
        return denied(
            start_response,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
    if bucket != UPLOAD_BUCKET:
        return denied(start_response, "AccessDenied", "Access Denied")
    problem = sigv4_problem_s3(environ, key_id, keys[key_id])
    if problem:
        return denied(start_response, "SignatureDoesNotMatch", problem)
    return moto(environ, start_response)


def standin_signed_by():
    """standin.py's SigV4 check of S3 requests (beside this file in the image)."""
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from standin import signed_by

    return signed_by


def sigv4_problem_s3(environ, key_id, known):
    secret, token = known
    if environ.get("HTTP_X_AMZ_SECURITY_TOKEN") != token:
        return "The provided token is malformed or otherwise invalid."
    found = standin_signed_by()(environ, key_id, secret)
    return found[1] if found else None


def denied(start_response, code, message):
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()
    return answer(start_response, 403, body, "application/xml")


if __name__ == "__main__":
    _ = gzip  # archives are gzip'd tars
    main()
