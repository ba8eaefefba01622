-- The router's join rule asks whether an agency was ever sent something from an episode (a permitting
-- decision for it there) before it lets an event that states the episode's id or refs join it.
CREATE INDEX decisions_episode_recipient ON decisions (episode_id, recipient);
