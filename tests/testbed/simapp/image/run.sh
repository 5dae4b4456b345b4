#!/usr/bin/env bash
# Stand-in for the simapp's /opt/ml/code/run.sh. Mirrors deepracer-simapp
# docker/files/robomaker/run.sh (newest commit read: 01f5f015): the same arguments, the same
# environment in and out, the same order of steps. Only what it starts is a stand-in: `ros2`
# (tests/testbed/simapp/image/ros2) instead of ROS 2 and Gazebo.
set -e

export ROS_DISTRO=jazzy
export PYTHONUNBUFFERED=1
export XAUTHORITY=/root/.Xauthority
export DEEPRACER_JOB_TYPE_ENV="LOCAL"
export PATH="/opt/ml/:$PATH"
source /opt/ros/${ROS_DISTRO}/setup.bash
source /opt/amazon/install/setup.bash
source /root/anaconda/bin/activate sagemaker_env

# what this script was given, for the tests (the real one prints only what follows)
mkdir -p /tmp/standin
printf '%s\n' "$@" > /tmp/standin/run.sh.args
echo "run.sh called with $# arguments: $*"

[ -n "$ROLLOUT_IDX" ] || export ROLLOUT_IDX=0

# With several workers, the worker number comes from the swarm slot or an election file;
# multi-config then takes this worker's params file and world from MULTI_CONFIG.
if [ "$1" == "multi" ]; then
	if [ -n "$DOCKER_REPLICA_SLOT" ]; then
		WORKER_NUM=$DOCKER_REPLICA_SLOT
	else
		COMMS_FILE=/mnt/comms/workers
		echo $HOSTNAME >> $COMMS_FILE
		WORKER_NUM=$(cat -n $COMMS_FILE | grep $HOSTNAME | cut -f1)
	fi
	export ROLLOUT_IDX=$(expr $WORKER_NUM - 1)
	if [ -n "$MULTI_CONFIG" ]; then
		echo $MULTI_CONFIG
		export S3_YAML_NAME=$(echo $MULTI_CONFIG | jq --arg worker $ROLLOUT_IDX -r '.multi_config[$worker | tonumber ].config_file')
		export WORLD_NAME=$(echo $MULTI_CONFIG | jq --arg worker $ROLLOUT_IDX -r '.multi_config[$worker | tonumber ].world_name')
	fi
	echo "Starting as worker $ROLLOUT_IDX, using world $WORLD_NAME and configuration $S3_YAML_NAME."
fi

export ROS_DOMAIN_ID=$ROLLOUT_IDX
echo "Using ROS_DOMAIN_ID=$ROS_DOMAIN_ID for worker $ROLLOUT_IDX"

# Check if we have an RTF_OVERRIDE to change the RTF - change the world file. As the real
# one: a world the image lacks makes xmlstarlet fail, and set -e ends the container.
if [[ -n "${RTF_OVERRIDE}" ]]; then
	echo "Setting RTF to ${RTF_OVERRIDE} for ${WORLD_NAME}"
	RTF_UPDATE_RATE=$(awk -v rtf=$RTF_OVERRIDE 'BEGIN{ update_rate=rtf*1000; printf "%0.6f", update_rate}')
	WORLD_FILE="/opt/amazon/install/deepracer_simulation_environment/share/deepracer_simulation_environment/worlds/${WORLD_NAME}.world"
	xmlstarlet ed -L -s '/sdf/world' -t elem -n physics $WORLD_FILE
	xmlstarlet ed -L -a '/sdf/world/physics' -t attr -n type -v ode $WORLD_FILE
	xmlstarlet ed -L -s '/sdf/world/physics' -t elem -n max_step_size -v 0.001000 $WORLD_FILE
	xmlstarlet ed -L -s '/sdf/world/physics' -t elem -n real_time_factor -v ${RTF_OVERRIDE} $WORLD_FILE
	xmlstarlet ed -L -s '/sdf/world/physics' -t elem -n real_time_update_rate -v ${RTF_UPDATE_RATE} $WORLD_FILE
	xmlstarlet ed -L -s '/sdf/world/physics' -t elem -n gravity -v '0.000000 0.000000 -9.800000' $WORLD_FILE
	xmlstarlet sel -t -c '/sdf/world/physics' $WORLD_FILE
fi

if [[ "${DEBUG_REWARD,,}" == "true" ]]; then
	echo "Enabling Reward Debugging"
fi

if [ -z "${2+x}" ]; then
	LAUNCH_FILE="distributed_training.launch.py"
else
	LAUNCH_FILE="$2"
fi

export GZ_IP=127.0.0.1

# A GUI without an external X server gets Xvfb and x11vnc on 5900 in the real image; the
# stand-in listens on 5900 in their place.
if [[ "${ENABLE_GUI,,}" == "true" ]] || [[ "${GAZEBO_RENDER_ENGINE,,}" == "ogre" ]]; then
	if [[ "${USE_EXTERNAL_X,,}" != "true" ]]; then
		export DISPLAY=:0
		python3 /opt/ml/code/standin.py vnc &
	else
		if [ -z "$DISPLAY" ]; then
			export DISPLAY=:$(ls /tmp/.X11-unix/ | cut -c2 | head -1)
		fi
	fi
fi

ros2 launch deepracer_simulation_environment $LAUNCH_FILE &
ROS2_LAUNCH_PID=$!
echo "Started ros2 launch with PID $ROS2_LAUNCH_PID"

BG_PIDS=""
sleep 1

if [ -n "$MULTI_CONFIG" ]; then
	if [ -f /scripts/alter_environment_$ROLLOUT_IDX.sh ]; then
		echo "Altering environment"
		bash /scripts/alter_environment_$ROLLOUT_IDX.sh &
		BG_PIDS="$BG_PIDS $!"
	fi
else
	if [ -f /scripts/alter_environment.sh ]; then
		echo "Altering environment"
		bash /scripts/alter_environment.sh &
		BG_PIDS="$BG_PIDS $!"
	fi
fi

echo "IP: $(hostname -I) ($(hostname))"

wait $ROS2_LAUNCH_PID
ROS2_EXIT_CODE=$?
echo "ros2 launch process exited with code $ROS2_EXIT_CODE"
if [ -n "$BG_PIDS" ]; then
	kill $BG_PIDS 2>/dev/null || true
fi
exit $ROS2_EXIT_CODE
