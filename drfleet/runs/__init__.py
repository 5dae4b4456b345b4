"""Runs and their decisions: from the user's files and the hosts' capacities to a plan
(training, plan, specs, capacity), what each command asks of the fleet as an intent (launch,
evaluation, s3access), the one executor that carries intents out (execute, with converge and
sagemaker on the hosts' side), the run record (runstate), runs sharing a fleet (sharing),
what the controller sees (observe, training_progress), the run's S3 (storage) and the typed
results the commands return (results). It may import the core, drfc and hosts; never the
command line, the model commands (store), the playbook engine, images or the viewer."""
