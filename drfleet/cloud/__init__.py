"""Hosts from an AWS account: `drfleet up` creates the fleet's EC2 instances (Ubuntu,
on-demand or spot, a security group, a key pair, a role) and writes their inventory, `drfleet
down` ends them. fleet.py decides (pure), account.py and ec2.py talk to AWS with boto3. It
may import the core and hosts."""
