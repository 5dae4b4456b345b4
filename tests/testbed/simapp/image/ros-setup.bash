# Stand-in for /opt/ros/jazzy/setup.bash: puts ros2 on PATH.
export PATH="/opt/ros/jazzy/bin:$PATH"
