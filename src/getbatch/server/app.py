"""Builds the Falcon WSGI app of a node: routes, and the one place errors are rendered."""
import os

import falcon

from ..auth.keys import signing_key
from ..cluster.peers import PEER_PREFIX
from ..cluster.rebalance import Rebalance
from ..jobs import Registry
from ..jobs.batchjobs import BatchJobs
from .auth import AuthMiddleware
from ..store.router import Storage
from .buckets import Bucket, BucketCollection
from .edge import CanonicalPath
from .cluster import (Daemon, Health, PeerCatchUp, PeerStates, PeerGuard, PeerPing, PeerPush,
                      PeerRebalance, PeerStamps, RebalanceAPI)
from .errors import handle_exception, make_serializer
from .jobs import BatchJobsAPI, JobQueries
from .metrics import install as install_metrics
from .epochs import EpochPlans, PeerPlan
from ..epochs.plans import Plans
from ..epochs.replicas import PlanCopies
from .moss import Moss
from .noderuntime import NodeRuntime
from ..runtime import FileStore, LiveConfig
from ..cluster.runtimeconf import EtcdStore
from .admit import Admission, Admitted
from .config_api import ClusterConfigAction, ConfigAPI
from .objects import Object
from .peer import PeerBatch


def create_app(config, storage, cluster=None, runtime=None):
    """The WSGI app serving `storage` (a store Storage) with `config` (a Config); on a cluster,
    `cluster` is the node's `getbatch.cluster.Cluster`, started here (in the worker process).
    What the app keeps in memory is its `runtime`'s (a new NodeRuntime unless given), its
    storage's and its cluster's."""
    runtime = NodeRuntime() if runtime is None else runtime
    node_id = config.node_id
    shared = None
    if cluster is not None:
        local = storage
        storage = cluster.start(local)
        # intra-cluster requests and a GetBatch's own items: this node's share of the buckets
        shared = Storage(dict(local.backends, ais=cluster.share))
        node_id = cluster.node.id
    # first: every guard after it, and the router, read the same (canonical) path
    middleware = [CanonicalPath()]
    if cluster is not None:  # next: peer routes carry the cluster secret, not user tokens
        middleware.append(PeerGuard(cluster))
    if config.auth:  # with `auth` off no middleware runs and every request is allowed
        middleware.append(AuthMiddleware(signing_key(config), config.auth_leeway))
    app = falcon.App(middleware=middleware)
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(Exception, handle_exception)
    app.set_error_serializer(make_serializer(node_id))
    app.add_route("/v1/buckets", BucketCollection(storage, config))
    jobs = Registry(os.path.join(config.data_dir, ".sys", "jobs"),
                    max_per_bucket=config.max_bucket_jobs)
    app.add_route("/v1/buckets/{bucket}", Bucket(storage, config, jobs))
    app.add_route("/v1/objects/{bucket}/{obj:path}", Object(storage, config))
    # runtime settings (runtime.py) and admission control (admit.py): GetBatch reads `live`
    on_etcd = cluster is not None and cluster.etcd is not None
    live = LiveConfig(config, EtcdStore(cluster.etcd).start() if on_etcd
                      else FileStore(config.data_dir))
    app.add_route("/v1/config", ConfigAPI(live, config.max_body))
    app.add_route("/v1/cluster/{action}", ClusterConfigAction(live))
    # GetBatch jobs: one directory per node (nodes may share a data dir)
    batch_jobs = BatchJobs(os.path.join(config.data_dir, ".sys", "jobs", "get-batch",
                                        str(config.port)), node_id, runtime.batch_ids)
    app.add_route("/v1/jobs", BatchJobsAPI(batch_jobs, cluster, jobs, node_id))
    plans = Plans(config.data_dir, storage, cluster.etcd if on_etcd else None,
                  PlanCopies(cluster) if on_etcd else None)
    app.add_route("/v1/ml/epochs", EpochPlans(plans, config))
    app.add_route("/v1/ml/epochs/{plan_id}", EpochPlans(plans, config), suffix="one")
    moss = Admitted(Moss(storage, live, batch_jobs, runtime.warm_pool, cluster, shared, plans),
                    Admission(live, config.data_dir))
    app.add_route("/v1/ml/moss", moss)
    app.add_route("/v1/ml/moss/{bucket}", moss)
    app.add_route("/v1/ml/moss/{bucket}/{extra:path}", moss, suffix="extra")
    app.add_route("/v1/daemon", Daemon(node_id, cluster))
    app.add_route("/v1/health", Health(cluster))
    app.add_route("/v1/cluster", JobQueries(jobs, config, batch_jobs))
    if cluster is not None:
        # intra-cluster (PeerGuard checks the secret)
        app.add_route(PEER_PREFIX + "/ping", PeerPing(cluster))
        app.add_route(PEER_PREFIX + "/objects/{bucket}/{obj:path}", Object(shared, config,
                                                                           peer=True))
        app.add_route(PEER_PREFIX + "/buckets/{bucket}", Bucket(shared, config, jobs))
        app.add_route(PEER_PREFIX + "/push/{bucket}/{obj:path}", PeerPush(cluster))
        app.add_route(PEER_PREFIX + "/stamps/{bucket}", PeerStamps(cluster))
        app.add_route(PEER_PREFIX + "/catchup", PeerCatchUp(cluster))
        app.add_route(PEER_PREFIX + "/states", PeerStates(cluster))
        app.add_route(PEER_PREFIX + "/batch", PeerBatch(shared, live, runtime))
        app.add_route(PEER_PREFIX + "/epochs/{plan_id}", PeerPlan(plans))
        app.add_route(PEER_PREFIX + "/jobs", BatchJobsAPI(batch_jobs, None, jobs, node_id))
        rebalance = Rebalance(cluster, cluster.share.local.data_dir)
        app.add_route(PEER_PREFIX + "/rebalance", PeerRebalance(rebalance))
        app.add_route("/v1/rebalance", RebalanceAPI(cluster, rebalance))
    install_metrics(app, node_id)
    return app
